"""The agent's shell: takes assigns, runs the diff, drives instance workers, sends reports.

Flow (all green threads, one OS thread):

    bus handler --enqueue--> inbox --control loop--> fence epoch, keep the latest
                                                     assignment, diff, start/stop
    instance workers --on change--> doorbell --reporter--> a report (or alive) to every reconciler

The bus handler only enqueues. The control loop is the only writer of the
instance table; queued assigns collapse into the latest accepted one before
it diffs. Every change of an instance that a restarted agent needs (pid, port,
restart counts) is written to the instance table on disk before the report
goes out; a new agent adopts from it (:meth:`Agent.start`). Between changes a
heartbeat is a small ``alive`` to each reconciler that acked the report it
stands for (:mod:`nodeagent.reporting`).
"""
import logging
import os
import time

import eventlet
import eventlet.queue

import corral
from corral import names, nodereport
from nodeagent import disk, facts, retention, users as app_users
from nodeagent.diff import diff
from nodeagent.environ import base_env
from nodeagent.pull import ImageCache
from nodeagent.instance import ExitWatch, Instance
from nodeagent.prober import Prober
from nodeagent.wakeup import Wakeup
from nodeagent.ports import PortAllocator
from nodeagent.process import Capture, Launcher
from nodeagent.reporting import Reporting
from nodeagent.restart import Backoff
from nodeagent.state import EpochFence, RunLedger, load_table, save_table, table_text

log = logging.getLogger(__name__)

_RECONCILE = object()


class Agent:
    """One node's agent. ``send(endpoint, type, body, epoch)`` delivers a message to the
    reconciler at ``endpoint``, one of ``endpoints``, never blocking: False when it cannot go now
    (dropped).

    ``users`` says who apps run as (:func:`nodeagent.users.choose`; the
    agent's own user when None); ``memory`` enforces memory requests
    (:meth:`nodeagent.cgroupfs.MemoryCgroups.probe`; not enforced when None);
    ``metrics`` (:class:`nodeagent.metrics.AgentMetrics`, or None) counts restarts,
    probes and image fetches.
    """

    def __init__(self, *, name, data_dir, images_dir, labels, address, heartbeat, send, endpoints=(),
                 launcher=None, parent_env=None, backoff=Backoff(), capture=Capture(), bus_stats=dict,
                 clock=time.time, users=None, memory=None, log_retention=7 * 24 * 3600.0, metrics=None):
        self.name = name
        self.data_dir = data_dir
        self.address = address
        self.labels = dict(labels)
        self.heartbeat = heartbeat
        self.send = send
        self.endpoints = list(endpoints)
        self.reporting = Reporting()
        self.launcher = launcher or Launcher()
        self.fence = EpochFence(data_dir)
        self.ran = RunLedger(data_dir)
        self._refused = set()  # runs refused by the last diff (said once in the log)
        self.metrics = metrics   # nodeagent.metrics.AgentMetrics, or None
        self.images = ImageCache(images_dir, in_use=self.images_in_use,
                                 on_fetch=metrics.fetched if metrics is not None else None)
        self.ports = PortAllocator(address)
        self.base_env = base_env(os.environ if parent_env is None else parent_env)
        self.users = users or app_users.OwnUser(data_dir, self.base_env.get("HOME"))
        self.memory = memory
        self.log_retention = log_retention
        self.backoff = backoff
        self.capture = capture
        self.bus_stats = bus_stats
        self.clock = clock
        self.records = {}
        for iid, record in load_table(data_dir).items():
            bad = names.bad_instance_id(iid) or names.bad_assignment(record.get("assignment"))
            if bad:  # never from this agent; a path would be built from it
                log.error("ignored a record of the instance table: %s", bad)
            else:
                self.records[iid] = record
        self.instances = {}
        self.assigned = [r["assignment"] for r in self.records.values() if not r.get("stopping")]
        self.replaced = frozenset()   # of the latest assign: instances to stop without their drain
        self.counters = {"assign_accepted": 0, "assign_stale": 0, "assign_other_node": 0, "bad_id": 0,
                         "reports_sent": 0, "run_refused": 0}
        self.inbox = eventlet.queue.LightQueue()
        self.changed = Wakeup()
        self.exits = ExitWatch()
        self.prober = Prober()
        self.closing = False
        self.streams = None  # nodeagent.sessions.Streams, set by the daemon once the bus exists
        self.started_at = clock()
        self.seq = 0
        self._saved_table = None
        self._threads = []

    def images_in_use(self):
        """The image ids of the instances this agent holds (never evicted)."""
        return {inst.assignment["image"] for inst in list(self.instances.values())}

    # -- entry points ---------------------------------------------------------

    def on_message(self, endpoint, msg):
        """Bus handler: enqueue an ``assign`` for the control loop; hand a logs/exec stream
        message to ``streams`` (:mod:`nodeagent.sessions`); anything else is ignored."""
        if msg.type == "assign":
            self.inbox.put(msg)
        elif msg.type == "ack":
            if self.reporting.on_ack(endpoint, msg.body, self.started_at):
                self.changed.ring()   # a reconciler that knows nothing of this node: the report now
        elif self.streams is not None and msg.type in self.streams.types:
            self.streams.on_message(endpoint, msg)

    def start(self):
        """Adopt the instances of the table on disk, start the control loop and the reporter,
        and send a first report at once."""
        for iid, record in self.records.items():
            inst = self._new_instance(record["assignment"], record)
            if record.get("stopping"):
                inst.request_stop()
        self.records = {}
        self._threads = [eventlet.spawn(self._control_loop), eventlet.spawn(self._report_loop),
                         eventlet.spawn(self._sweep_loop)]
        self.changed.ring()

    def shutdown(self):
        """Stop every instance (each with its drain and grace, in parallel), report, and end the loops."""
        self.closing = True
        for inst in self.instances.values():
            inst.request_stop()
        for inst in list(self.instances.values()):
            inst.wait()
        self.send_report()
        for t in self._threads:
            t.kill()
        self.save_table()

    def detach(self):
        """End the loops and the workers, leave every instance running, and save the table for the next agent."""
        self.closing = True
        for t in self._threads:
            t.kill()
        for inst in self.instances.values():
            inst.abandon()
        self.save_table()

    def save_table(self):
        """Write the instance table when it changed since the last write."""
        text = table_text({iid: {**inst.persisted(), "stopping": inst.stop_requested}
                           for iid, inst in self.instances.items() if not inst.gone})
        if text != self._saved_table:
            save_table(self.data_dir, text)
            self._saved_table = text

    def _on_instance_change(self):
        try:
            self.save_table()
        except OSError as e:
            log.error("the instance table could not be written (%s); a restarted agent may not find every instance", e)
        self.changed.ring()

    def _new_instance(self, entry, record=None):
        inst = Instance(entry, node=self.name, address=self.address, data_dir=self.data_dir,
                        image_cache=self.images, launcher=self.launcher, ports=self.ports,
                        base_env=self.base_env, on_change=self._on_instance_change, users=self.users,
                        memory=self.memory, clock=self.clock, backoff=self.backoff, capture=self.capture,
                        record=record, exits=self.exits, prober=self.prober, metrics=self.metrics)
        self.instances[inst.id] = inst
        inst.start()
        return inst

    # -- the control loop -----------------------------------------------------

    def accept(self, msg):
        """Decide one assign: True when it is for this node, every id in it fits its pattern
        (:func:`corral.names.bad_assignment`: a path is built from each) and it is not fenced off;
        then it is the latest. A bad id refuses the whole assign, counted as ``bad_id``."""
        body = msg.body
        bad = next(filter(None, map(names.bad_assignment, body["instances"])), None)
        if bad:
            self.counters["bad_id"] += 1
            log.warning("refused an assign from %s: %s", msg.sender, bad)
            return False
        if body["node"] != self.name:
            self.counters["assign_other_node"] += 1
            log.warning("ignored an assign for node %r from %s: this node is %r", body["node"], msg.sender, self.name)
            return False
        if not self.fence.admit(msg.epoch):
            self.counters["assign_stale"] += 1
            log.warning("refused an assign from %s with epoch %d: epoch %d was already seen",
                        msg.sender, msg.epoch, self.fence.highest)
            return False
        self.counters["assign_accepted"] += 1
        self.assigned = list(body["instances"])
        self.replaced = frozenset(body.get("replaced", ()))
        self.images.offer(self.assigned)   # fresh layer URLs for fetches still being retried
        return True

    def reconcile(self):
        """Diff what runs against the latest assignment, then start and stop (idempotent)."""
        if self.closing:
            return
        changes = diff({iid: inst.view() for iid, inst in self.instances.items()}, self.assigned, self.ran.ids)
        for iid in changes.stop:
            self.instances[iid].request_stop(drain=iid not in self.replaced)
        for iid in set(changes.refused) - self._refused:
            self.counters["run_refused"] += 1
            log.warning("refused to start run %s again: this agent started it once", iid)
        self._refused = set(changes.refused)
        for entry in changes.start:
            if entry["spec"].get("run"):
                self.ran.add(entry["id"])  # on disk before it can start
            self._new_instance(entry)
        if changes.start or changes.stop:
            self.changed.ring()

    def _control_loop(self):
        while True:
            item = self.inbox.get()
            batch = [item]
            while True:
                try:
                    batch.append(self.inbox.get_nowait())
                except eventlet.queue.Empty:
                    break
            for item in batch:
                if item is not _RECONCILE:
                    self.accept(item)
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile failed; the next assign or change retries it")

    # -- reports --------------------------------------------------------------

    def conditions(self, capacity):
        """The node's conditions: what is wrong with it, or what it cannot enforce."""
        out = []
        if any(disk.under_pressure(facts.disk_free_bytes(d), facts.disk_total_bytes(d))
               for d in (self.data_dir, self.images.images_dir)):
            out.append("DiskPressure")
        if self.memory is None or not self.memory.enforced:
            out.append("MemoryLimitsNotEnforced")  # the reason is in the agent's log
        if not self.users.separate:
            out.append(app_users.CONDITION)  # the old name of Isolation=False, kept for its readers
        return out

    def isolation(self):
        """The node condition ``Isolation`` (:func:`nodeagent.users.isolation`): whether apps run as
        their own users, and if not, why."""
        if self.users.separate:
            return app_users.isolation(None, None, getattr(self.launcher, "sandbox_refused", None))
        return app_users.isolation(getattr(self.users, "code", None) or "AppUsersOff", self.users.reason)

    def rejected(self):
        """Messages dropped, by reason: the bus's (signature, replay, schema, ...) and the agent's own."""
        out = dict(self.bus_stats().get("rejected", {}))
        for reason in ("assign_stale", "assign_other_node", "bad_id"):
            if self.counters[reason]:
                out[reason] = self.counters[reason]
        return out

    def report(self):
        """The body of a ``report`` message: node facts, the highest epoch seen, every instance held.

        ``started_at`` and ``seq`` tell a restarted agent (a later ``started_at``)
        from a delayed message (a lower ``seq`` of the same ``started_at``).
        """
        self.seq += 1
        capacity = facts.capacity(self.data_dir)
        return {
            "node": {"name": self.name, "address": self.address, "labels": self.labels,
                     "capacity": capacity, "conditions": self.conditions(capacity), "isolation": self.isolation(),
                     "load": facts.load(),
                     "version": corral.__version__, "rejected_messages": self.rejected()},
            "epoch_seen": self.fence.highest,
            "alive": True,
            "started_at": self.started_at,
            "seq": self.seq,
            "instances": [inst.report() for inst in self.instances.values()],
        }

    def send_report(self):
        """Send each reconciler the report, or an ``alive`` that stands for the one it acked
        (:class:`nodeagent.reporting.Reporting`); instances whose stop finished are in it once,
        then forgotten."""
        gone = [iid for iid, inst in self.instances.items() if inst.gone]
        body = self.report()
        digest, now = nodereport.digest(body), time.monotonic()
        for endpoint in self.endpoints:
            if not self.send(endpoint, *self.reporting.messages(endpoint, body, digest, now), self.fence.highest):
                self.reporting.unsent(endpoint)
        self.counters["reports_sent"] += 1
        for iid in gone:
            del self.instances[iid]
        if gone:
            self.save_table()
            self.inbox.put(_RECONCILE)  # an id deferred behind its own stop may start now

    # -- log folders --------------------------------------------------------

    def held_ids(self):
        """Every instance id the agent holds: running, stopping, assigned, or still in the table on disk."""
        return set(self.instances) | set(self.records) | {entry["id"] for entry in self.assigned}

    def sweep_logs(self):
        """Delete the log folders of instances forgotten for ``log_retention`` (:mod:`nodeagent.retention`)."""
        gone = retention.sweep(os.path.join(self.data_dir, "logs"), self.held_ids(), self.clock(), self.log_retention)
        for name in gone:
            log.info("deleted the log folder of instance %s: forgotten for over %gs", name, self.log_retention)
        return gone

    def _sweep_loop(self):
        # An hour between sweeps at most; often enough for a retention shrunk in tests.
        interval = min(3600.0, max(0.2, self.log_retention / 2))
        while True:
            eventlet.sleep(interval)
            try:
                self.sweep_logs()
            except Exception:
                log.exception("sweeping old log folders failed; the next sweep retries")

    def _report_loop(self):
        while True:
            if self.changed.wait(self.heartbeat):
                eventlet.sleep(0)  # let a burst of changes land in one report
            try:
                self.send_report()
            except Exception:
                log.exception("sending a report failed; the next heartbeat retries")
