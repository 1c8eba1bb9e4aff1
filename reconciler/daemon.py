"""One reconciler process: API server, bus server, lease keeper and control loop.

Every reconciler serves the API and hears every agent; only the one holding
the leader lease runs the loop. Green threads:

- bus: each verified ``report`` updates the observed view; a change enqueues
  the apps it concerns (a new node: everything);
- lease: take/renew every ``lease_renew`` seconds; becoming leader enqueues everything;
- loop: one worker takes the due keys of the work queue (app names, ``ALL``
  every ``loop_interval``) and syncs them, if (and only while) we lead; a
  failed app is retried after its own backoff. After a sync it pauses as long
  as the sync took (at most ``loop_interval``), so syncs take no more than
  half the time and the bus keeps up with the reports. One worker, on purpose:
  placements of different apps compete for the same nodes' room, and a single
  writer of the desired table needs no optimistic retry (Nomad's plan applier
  serialises them too);
- gitops: every ``gitops_tick``, the GitSources that are due are synced, if we lead;
- api: eventlet.wsgi on the API address.
"""
import collections
import logging
import shutil
import signal
import tempfile
import time

import corral.green  # noqa: F401  (silences the banner before eventlet loads)
import eventlet
import eventlet.queue
import eventlet.wsgi

from corral.auth import api_token
from corral.settings import Timings
from corral.store import Fenced, StoreError, open_store
from corral.wire.bus import BusServer
from corral.wire.keys import hide_process, key_path, read_key, store_dsn as store_dsn_from
from reconciler import views
from reconciler.api import Api
from reconciler.gitops.repo import GitRepos
from reconciler.gitops.sync import GitSync
from reconciler.instance_events import instance_events
from reconciler.leader import LeaderLease, process_holder
from reconciler.loop import ALL, Controller
from reconciler.observed import Observed, is_delayed
from reconciler.streams import Relay
from reconciler.workqueue import WorkQueue

log = logging.getLogger(__name__)


class ClusterState:
    """What the API asks the daemon: observed view merged with the store."""

    def __init__(self, name, store, observed, lease, timings, clock=time.time, bus_stats=dict):
        self.name, self.store, self.observed, self.lease, self.timings, self.clock = \
            name, store, observed, lease, timings, clock
        self.bus_stats = bus_stats

    def _node_views(self):
        stored = self.store.list_nodes()
        desired = self.store.list_desired()
        known = {n.name for n in stored} | {r.node for r in desired}
        cordoned = {n.name for n in stored if n.cordoned}
        return stored, desired, self.observed.node_views(known, cordoned, self.clock(), self.timings,
                                                         draining={n.name for n in stored if n.draining})

    def health(self):
        """Name, leadership, and what this reconciler's bus refused (``rejected_messages``, by reason)
        and dropped: the counts that show a peer sending garbage or replays."""
        stats = self.bus_stats()
        return {"name": self.name, "leader": self.lease.epoch is not None, "epoch": self.lease.epoch,
                "rejected_messages": stats.get("rejected", {}), "dropped_messages": stats.get("dropped", 0)}

    def instances(self):
        _, desired, node_views = self._node_views()
        return views.instances_json(desired, self.observed.instance_reports(),
                                    {v.name: v.state for v in node_views})

    def nodes(self):
        stored, desired, node_views = self._node_views()
        return views.nodes_json(node_views, stored, self.observed.reports(), desired, self.observed.last_seen)


def open_store_retrying(dsn, stop_after=60.0):
    """Open the store, retrying while it is unreachable (a daemon may start first)."""
    deadline = time.monotonic() + stop_after
    while True:
        try:
            return open_store(dsn)
        except StoreError as e:
            if time.monotonic() > deadline:
                raise
            log.warning("store not ready (%s); retrying", e)
            eventlet.sleep(1.0)


def run(*, store_dsn=None, api, bus, secret_file=None, name, timings=Timings()):
    """Run one reconciler until SIGINT/SIGTERM. ``api`` is ``HOST:PORT``, ``bus`` a zmq endpoint.

    The key's path and the store DSN come from the environment when not given
    (:func:`corral.wire.keys.key_path`, :func:`corral.wire.keys.store_dsn`): never from argv."""
    hide_process()
    key = read_key(key_path(secret_file))
    store = open_store_retrying(store_dsn_from(store_dsn))
    observed = Observed(started_at=time.time())
    kicks = eventlet.queue.LightQueue(maxsize=1)
    pending_events = collections.deque(maxlen=1000)   # instance events waiting for the store (leader only)
    work = WorkQueue()

    def kick(*keys):
        """Enqueue ``keys`` (app names; none: everything) and wake the worker."""
        work.add_all(keys or (ALL,))
        try:
            kicks.put_nowait(True)
        except eventlet.queue.Full:
            pass

    def on_message(peer, msg):
        if msg.type in relay.types:
            relay.on_message(peer, msg)
            return
        if msg.type != "report":
            return
        node = msg.body["node"]["name"]
        prev = observed.latest(node)
        new_node = prev is None
        if prev is not None and lease.epoch is not None and not is_delayed(prev, msg.body):
            pending_events.extend(("app", app, reason, message, name)
                                  for app, reason, message in instance_events(node, prev.instances,
                                                                              msg.body["instances"]))
        if observed.record(msg.body, time.time()):
            if new_node:
                kick()
            else:
                kick(*({i["app"] for i in msg.body["instances"]} | controller.apps_on_node(node)))

    server = BusServer(bus, key, name, on_message, window=timings.replay_window)
    relay = Relay(server.send, lambda node: time.time() - observed.last_seen(node), timings.heartbeat_timeout)
    lease = LeaderLease(store, process_holder(name), timings)
    controller = Controller(store, observed, server, timings, name)
    state = ClusterState(name, store, observed, lease, timings, bus_stats=server.stats)
    stopping = eventlet.event.Event()

    def lease_loop():
        while not stopping.ready():
            was = lease.epoch
            if lease.tick() is not None and was is None:
                kick()
            eventlet.sleep(timings.lease_renew)

    def control_loop():
        next_resync = 0.0
        while not stopping.ready():
            now = time.monotonic()
            leading = lease.epoch is not None   # else woken by a kick (lease_loop kicks once it leads) or the timer
            try:
                kicks.get(timeout=work.wait_hint(now, max(0.0, min(timings.loop_interval, next_resync - now)), leading))
            except eventlet.queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_resync:
                work.add(ALL)
                next_resync = now + timings.loop_interval
            epoch = lease.epoch
            if epoch is None or stopping.ready():
                continue
            keys = work.take(now)
            if keys:
                sync(epoch, keys)
                # Leave the other green threads as long as the sync took (at most a loop
                # interval: a sync slowed by a store outage must not delay the next): back to
                # back, the syncs of a busy cluster let the bus read one report per sync,
                # until 1,000 nodes seemed unreachable (bench/scale.py).
                eventlet.sleep(min(time.monotonic() - now, timings.loop_interval))
            eventlet.sleep(0)

    def sync(epoch, keys):
        failed = set(keys)
        try:
            result = controller.sync(epoch, keys)
            failed = set(keys) if result.deferred else result.failed
        except Fenced:
            log.warning("%s was fenced at epoch %d: another reconciler leads", name, epoch)
            lease.release()
        except StoreError as e:
            log.warning("sync of %s failed: %s", ", ".join(sorted(keys)), e)
        except Exception:
            log.exception("sync of %s failed", ", ".join(sorted(keys)))
        now = time.monotonic()
        for key in keys:
            work.done(key)
            if key in failed:
                work.retry(key, now)
            else:
                work.forget(key)

    def events_loop():
        """Write the instance events the reports produced, off the bus's green thread; a store
        that is down keeps them (at most the deque's length) for the next try."""
        while not stopping.ready():
            eventlet.sleep(timings.loop_interval)
            if not pending_events:
                continue
            batch = list(pending_events)
            try:
                store.add_events(batch)
            except StoreError as e:
                log.warning("%d instance event(s) not written yet: %s", len(batch), e)
                continue
            for _ in batch:
                pending_events.popleft()

    git_dir = tempfile.mkdtemp(prefix="corral-git-")
    gitsync = GitSync(store, GitRepos(git_dir, timings.git_timeout), name, kick, scratch_dir=git_dir)

    def gitops_loop():
        while not stopping.ready():
            eventlet.sleep(timings.gitops_tick)
            epoch = lease.epoch
            if epoch is None or stopping.ready():
                continue
            try:
                gitsync.run_due(epoch)
            except Fenced:
                log.warning("%s was fenced at epoch %d during a git sync", name, epoch)
            except StoreError as e:
                log.warning("git sync failed: %s", e)
            except Exception:
                log.exception("git sync failed")

    host, _, port = api.rpartition(":")
    sock = eventlet.listen((host or "127.0.0.1", int(port)), backlog=1024)
    app = Api(store, state, api_token(key), kick, relay)
    server.start()
    threads = [eventlet.spawn(lease_loop), eventlet.spawn(control_loop), eventlet.spawn(gitops_loop),
               eventlet.spawn(events_loop),
               eventlet.spawn(eventlet.wsgi.server, sock, app, log=logging.getLogger("corral.api.access"),
                              log_output=False, socket_timeout=60)]

    def on_signal(signum, frame):
        stopping.send(True) if not stopping.ready() else None

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("reconciler %s: api http://%s, bus %s", name, api, bus)
    stopping.wait()
    lease.release()
    for t in threads:
        t.kill()
    server.close()
    sock.close()
    store.close()
    shutil.rmtree(git_dir, ignore_errors=True)
    log.info("reconciler %s stopped", name)
