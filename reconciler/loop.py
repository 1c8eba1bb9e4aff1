"""The control loop: the thin shell around the planner (leader only).

One pass (:meth:`Controller.run_once`) reads every app, the desired instance
table and the builds from the store, the observed state from memory, makes
sure each app's image is queued for the builder, calls :func:`plan`, writes
the plan in one fenced transaction, records why in events, updates each
app's status, and sends every node its whole assignment. Passes run on a
timer and whenever something changes (an apply, a report that differs); a
pass is level triggered, so a missed trigger costs at most one interval.
"""
import logging
import secrets
import time

from corral.store import Fenced
from reconciler import specs
from reconciler.planner import plan
from reconciler.status import app_status, next_revision
from reconciler.model import LOST

log = logging.getLogger(__name__)


def new_instance_id(existing):
    """A factory of ids like ``hello-web-7f3a`` that never repeats one in ``existing``."""
    def make(app, process):
        for nbytes in (2, 2, 2, 3, 4, 8):
            candidate = f"{app}-{process}-{secrets.token_hex(nbytes)}"
            if candidate not in existing:
                existing.add(candidate)
                return candidate
        raise RuntimeError("could not find a free instance id")
    return make


class Controller:
    """Runs loop passes for the leader and pushes assignments over the bus."""

    def __init__(self, store, observed, bus, timings, name, clock=time.time):
        self.store = store
        self.observed = observed
        self.bus = bus
        self.timings = timings
        self.name = name
        self.actor = f"reconciler/{name}"
        self.clock = clock
        self._node_written = {}  # node -> (facts, when) last written to the store
        self._unplaced_said = {}  # (app, process) -> reason last recorded as an event

    # -- one pass ---------------------------------------------------------
    def run_once(self, epoch):
        """One level-triggered pass as leader at ``epoch``; raises Fenced if deposed."""
        now = self.clock()
        self._record_nodes(now)
        records = self.store.list_apps()
        builds = {b.key: b for b in self.store.list_builds()}
        artifacts = {b.image: {"url": b.artifact_url, "sha256": b.artifact_sha256}
                     for b in builds.values() if b.state == "succeeded" and b.image}
        apps, app_builds, hashes = [], {}, {}
        for rec in records:
            build = None
            if not rec.deleting:
                key, inputs = specs.build_inputs(rec)
                build = builds.get(key)
                if build is None:
                    build = self.store.enqueue_build(key, rec.name, inputs)
                    self.store.add_event("app", rec.name, "BuildQueued",
                                         f"image build queued for source {rec.source_digest[:19]}", self.actor)
            image = build.image if build is not None and build.state == "succeeded" else None
            if image is not None:
                hashes[rec.name] = specs.revision_hash(rec.spec, image)
                revision = next_revision(rec.status, hashes[rec.name])
            else:
                revision = rec.status.get("revision", "0")
            app_builds[rec.name] = build
            apps.append(specs.desired_app(rec, image, artifacts.get(image), revision))

        desired = self.store.list_desired()
        stored_nodes = self.store.list_nodes()
        known = {n.name for n in stored_nodes} | {r.node for r in desired}
        cordoned = {n.name for n in stored_nodes if n.cordoned}
        nodes = self.observed.node_views(known, cordoned, now, self.timings)
        observed = self.observed.instances()
        result = plan(apps, desired, observed, nodes, new_instance_id({r.id for r in desired}), now=now)

        if result.boot or result.stop:
            self.store.write_desired(epoch, list(result.boot), [s.id for s in result.stop])
            for row in result.boot:
                self.store.add_event("app", row.app, "Scheduled",
                                     f"instance {row.id} ({row.process}, revision {row.revision}) placed on node {row.node}",
                                     self.actor)
            for s in result.stop:
                app = next((r.app for r in desired if r.id == s.id), "?")
                self.store.add_event("app", app, "Stopping", f"instance {s.id}: {s.reason}", self.actor)
        for name in result.purge:
            self.store.purge_app(name, epoch)
            self.store.add_event("app", name, "Deleted", "every instance stopped; app removed", self.actor)
        self._record_unplaced(result.unplaced)

        rows = [r for r in desired if r.id not in {s.id for s in result.stop}] + list(result.boot)
        ready_ids = {o.id for o in observed if o.ready and o.state == "running"}
        for rec, app in zip(records, apps):
            if rec.deleting or rec.name in result.purge:
                continue
            status = app_status(
                generation=rec.generation, app=app, build=app_builds[rec.name],
                rev_hash=hashes.get(rec.name, rec.status.get("revisionHash")),
                rows=[r for r in rows if r.app == rec.name], ready_ids=ready_ids,
                unplaced=[u for u in result.unplaced if u.app == rec.name])
            if status != rec.status:
                self.store.set_app_status(rec.name, status, epoch)
        self.push_assignments(epoch, rows, artifacts, nodes)
        return result

    # -- helpers ----------------------------------------------------------
    def push_assignments(self, epoch, rows, artifacts, nodes):
        """Send every node that is not lost its whole assignment (idempotent on the agent)."""
        by_node = {n.name: [] for n in nodes if n.state != LOST}
        for r in rows:
            if r.node in by_node and r.image in artifacts:
                by_node[r.node].append({
                    "id": r.id, "app": r.app, "process": r.process, "revision": r.revision,
                    "image": r.image, "artifact": artifacts[r.image], "spec": r.spec})
        for node, instances in by_node.items():
            self.bus.send(node.encode(), "assign", {"node": node, "instances": instances}, epoch)

    def _record_nodes(self, now):
        """Write node facts to the store when they change, and every 10 s for last_seen."""
        for name, rep in self.observed.reports().items():
            facts = (rep.node.get("address", ""), rep.node.get("labels", {}), rep.node.get("capacity", {}))
            prev = self._node_written.get(name)
            if prev is None or prev[0] != facts or now - prev[1] > 10:
                self.store.upsert_node(name, facts[0], facts[1], facts[2], rep.received_at)
                self._node_written[name] = (facts, now)

    def _record_unplaced(self, unplaced):
        """One event per new reason an instance cannot be placed (not one per pass)."""
        current = {(u.app, u.process): u.reason for u in unplaced}
        for (app, process), reason in current.items():
            if self._unplaced_said.get((app, process)) != reason:
                self.store.add_event("app", app, "Unschedulable", f"process {process}: {reason}", self.actor)
        self._unplaced_said = current


__all__ = ["Controller", "Fenced", "new_instance_id"]
