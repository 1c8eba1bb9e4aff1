"""The build worker: claims jobs from the store's queue and records their outcome.

::

    idle:     claim_build(name, stale_after) every poll seconds
    claimed:  heartbeat_build every stale_after/4 s, and at once on a new phase
                                                      (green thread; the phase is the build's progress)
              build_image(...)                        (builder.pipeline)
              finish_build(succeeded|failed) + event "Built" | "BuildFailed"
                (the lock; on failure the log's last lines): the layer folders are in place,
                all a node sharing the images dir needs
    packing:  (green thread, the next job goes on) each layer's archive packed, then
              set_build_layers: the layers with their URLs, sha256 and size, which the
              reconciler needs to send the image to any node; a builder killed before
              that packs again on start (recover)
    reclaimed: a heartbeat answered Conflict (this builder went silent too
              long and another took the job): the build is abandoned.
    stopping: the current build is abandoned (its commands killed, its folder
              removed) and left "building"; once its heartbeats are older than
              stale_after, another builder claims it.

Several builders may share one queue: the store hands a job to one of them.
"""
import logging
import os
import time

import eventlet
import eventlet.event

from builder import archives
from builder.failures import BuildAbandoned, BuildFailed
from builder.engines import find_uv
from builder.pipeline import build_image, log_path, pack_archives, run_here
from builder.prune import prune_layers, prune_wheels
from corral import image_layout
from corral.store import Conflict, StoreError

log = logging.getLogger("corral.builder")

LOG_TAIL_LINES = 20      # lines of a failed build's log kept with the build
LOG_TAIL_BYTES = 16384


def log_tail(path, lines=LOG_TAIL_LINES, limit=LOG_TAIL_BYTES):
    """The last ``lines`` lines of the file at ``path`` (at most ``limit`` bytes), or "" when unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Worker:
    """Works build jobs one at a time for the builder ``workshop.name``."""

    def __init__(self, store, workshop, *, layers_base, stale_after, heartbeat_store=None,
                 offload=run_here, metrics=None):
        self.store = store
        self.metrics = metrics   # builder.metrics.BuilderMetrics, or None
        self.workshop = workshop
        self.layers_base = layers_base.rstrip("/")
        self.stale_after = stale_after
        self.heartbeat_store = heartbeat_store or store
        self.offload = offload
        self.actor = f"builder/{workshop.name}"
        self.packing = {}   # build id -> (the green thread packing its archives, its layers): never pruned

    def run(self, stopping, poll):
        """Claim and work jobs until ``stopping()``; look for work every ``poll`` s when idle."""
        try:
            self.recover(stopping)
        except StoreError as exc:
            log.warning("builder %s could not reach the store: %s", self.workshop.name, exc)
        while not stopping():
            try:
                job = self.work_next(stopping)
            except StoreError as exc:
                log.warning("builder %s could not reach the store: %s", self.workshop.name, exc)
                job = None
            if job is None:
                _sleep_unless(stopping, poll)

    def work_next(self, stopping=lambda: False):
        """Claim the next job and work it; return the job, or None when the queue is empty."""
        job = self.store.claim_build(self.workshop.name, stale_after=self.stale_after)
        if job is None:
            return None
        self.work(job, stopping)
        return job

    def work(self, job, stopping=lambda: False):
        """Build a claimed job and record the outcome; an abandoned job is left as it is."""
        log.info("builder %s: build %s of app %s started", self.workshop.name, job.id, job.app)
        started = time.monotonic()
        lost = []  # set by the heartbeat when another builder has reclaimed the job
        phase = [None, eventlet.event.Event()]   # the current phase, and a wake-up for the heartbeat
        beating = eventlet.spawn(self._heartbeats, job.id, lost, phase)

        def progress(text):
            phase[0] = text
            if not phase[1].ready():
                phase[1].send(True)

        try:
            outcome = build_image(job.id, job.inputs, store=self.store, workshop=self.workshop, app=job.app,
                                  stopping=lambda: bool(lost) or stopping(), offload=self.offload,
                                  progress=progress)
        except BuildAbandoned:
            log.info("builder %s: build %s abandoned (%s)", self.workshop.name, job.id,
                     "reclaimed by another builder" if lost else "stopping")
            self._count("abandoned", started)
            return
        except BuildFailed as exc:
            self._failed(job, str(exc), exc.image, exc.phases)
            self._count("failed", started, exc.phases)
            return
        except Exception as exc:  # a bug or a broken disk: the job still gets an answer
            log.exception("builder %s: build %s crashed", self.workshop.name, job.id)
            self._failed(job, f"builder {self.workshop.name} failed unexpectedly: {type(exc).__name__}: {exc}"
                         f" (see {log_path(self.workshop, job.id)})", None, {})
            self._count("failed", started)
            return
        finally:
            beating.kill()
        self._count("succeeded", started, outcome.phases, outcome.layer_hits)
        packed = all(layer.get("sha256") for layer in outcome.layers)
        recorded = self._record(job, "Built",
                                f"image {outcome.image} ready ({outcome.cache}, {time.monotonic() - started:.1f}s)"
                                f" on builder {self.workshop.name}",
                                state="succeeded", image=outcome.image, lock=outcome.lock, cache=outcome.cache,
                                phases=outcome.phases, layers=self._with_urls(outcome.layers) if packed else None)
        if recorded and not packed:
            self.packing[job.id] = (eventlet.spawn(self.publish_layers, job.id, outcome.layers, stopping),
                                    outcome.layers)
        self.prune(keep={(layer["kind"], layer["id"])
                         for layers in [outcome.layers] + [pending for _, pending in self.packing.values()]
                         for layer in layers})

    def _count(self, result, started, phases=None, layer_hits=None):
        if self.metrics is not None:
            self.metrics.ended(result, time.monotonic() - started, phases, layer_hits)

    def _with_urls(self, layers):
        return [dict(layer, url=f"{self.layers_base}/layers/{layer['kind']}/{layer['id'][7:]}.tar")
                for layer in layers]

    def publish_layers(self, build_id, layers, stopping=lambda: False):
        """Pack the archives of a succeeded build's ``layers`` and record them with their URLs,
        sha256 and size (what agents fetch and verify); True when recorded. A failure is logged
        and left for :meth:`recover` (the build keeps no layers: no node is sent it meanwhile)."""
        try:
            packed = pack_archives(self.workshop, layers, stopping)
            self.heartbeat_store.set_build_layers(build_id, self._with_urls(packed))
            return True
        except BuildAbandoned:
            return False
        except (OSError, StoreError) as exc:
            log.warning("builder %s: the layers of build %s could not be packed or recorded: %s",
                        self.workshop.name, build_id, exc)
            return False
        finally:
            self.packing.pop(build_id, None)

    def wait_packed(self):
        """Wait until the archives of every build recorded so far are packed (or failed to be)."""
        for packing, _ in list(self.packing.values()):
            packing.wait()

    def recover(self, stopping=lambda: False):
        """Pack and record the layers of this builder's succeeded builds that have none (it was
        stopped or killed between recording a build and packing its archives); return their ids."""
        archives.remove_stale_temporaries(os.path.join(self.workshop.cache_dir, "artifacts"))
        done = []
        for build in self.store.list_builds():
            if build.state != "succeeded" or build.layers is not None or build.worker != self.workshop.name:
                continue
            facts = image_layout.read_marker(self.workshop.images_dir, build.image) if build.image else None
            if not facts:
                log.warning("builder %s: build %s succeeded but its image %s is gone from %s",
                            self.workshop.name, build.id, build.image, self.workshop.images_dir)
                continue
            layers = [{"kind": layer["kind"], "id": layer["id"], "sha256": None, "size": None}
                      for layer in facts.get("layers") or ()]
            if self.publish_layers(build.id, layers, stopping):
                done.append(build.id)
        return done

    def prune(self, keep=()):
        """Bring the layer and wheel caches within their sizes, sparing the layers in ``keep``
        (called between builds: none of this builder's runs)."""
        try:
            gone = (self.offload(prune_layers, self.workshop, keep)
                    + prune_wheels(self.workshop, find_uv(), offload=self.offload))
        except OSError as exc:
            log.warning("builder %s: pruning the caches failed: %s", self.workshop.name, exc)
            return
        if gone:
            log.info("builder %s: pruned %d cache entries, least recently used first", self.workshop.name, len(gone))

    def _failed(self, job, error, image, phases):
        log.info("builder %s: build %s failed: %s", self.workshop.name, job.id, error)
        self._record(job, "BuildFailed", error, state="failed", image=image,
                     phases=phases, error=error, log_tail=log_tail(log_path(self.workshop, job.id)))

    def _record(self, job, reason, message, **outcome):
        """Finish the build in the store with ``outcome``; True when recorded."""
        try:
            self.store.finish_build(job.id, self.workshop.name, **outcome)
            self.store.add_event("app", job.app, reason, message, self.actor)
            return True
        except StoreError as exc:
            # The job stays "building"; once stale, a builder claims it again and finds a cache hit.
            log.warning("builder %s: could not record build %s: %s", self.workshop.name, job.id, exc)
            return False

    def _heartbeats(self, build_id, lost, phase):
        every = max(self.stale_after / 4.0, 0.05)
        said = None
        while True:
            try:
                with eventlet.Timeout(every):
                    phase[1].wait()
            except eventlet.Timeout:
                pass
            phase[1] = eventlet.event.Event()
            try:
                self.heartbeat_store.heartbeat_build(build_id, self.workshop.name,
                                                     progress=phase[0] if phase[0] != said else None)
                said = phase[0]
            except Conflict:
                lost.append(True)
                return
            except StoreError as exc:
                log.warning("builder %s: heartbeat of build %s failed: %s", self.workshop.name, build_id, exc)


def _sleep_unless(stopping, seconds, step=0.1):
    """Sleep ``seconds``, waking early when ``stopping()`` turns true."""
    deadline = time.monotonic() + seconds
    while not stopping():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        eventlet.sleep(min(step, left))
