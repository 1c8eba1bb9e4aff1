"""The route table feed of one reconciler: the thin shell around reconciler/routes.py.

Every reconciler (leader or not: each hears every agent and reads the same
store) derives the table and publishes it on its own XPUB endpoint::

    kick (a report changed, a sync wrote the desired table) or every interval
      -> compute() -> delta from the last table, seq + 1 -> publish
    a router subscribes (or asks again after a gap) -> one snapshot (coalesced)
    every interval -> a tick with the current seq (a router that missed the last
      delta notices, and one that hears nothing knows the feed is gone)

``stream`` is new at every start, so a router sees a restarted reconciler's
seq starting over as a new stream, never as a gap or an old message.

A reconciler that hears no agent (it is the one cut off, or it has just
started) would derive a table with every node unreachable and no backend at
all; it stays silent instead (:class:`Touch`) until it has heard the agents
for a whole heartbeat timeout again, long enough for every live node to have
reported.
"""
import logging
import os
import time

import eventlet
import eventlet.queue

from corral.routetable import delta_body, route_to_json

log = logging.getLogger(__name__)

COALESCE = 0.05   # seconds a pass waits after a kick, so that a burst of reports makes one delta


class Touch:
    """Whether a reconciler hears the agents well enough to publish routes. Pure: times are passed in.

    Out of touch when no report came for half the heartbeat ``timeout``: before any node can
    turn unreachable in this reconciler's eyes (which takes the whole timeout), so that a
    reconciler that is being cut off never publishes a table of unreachable nodes (the routers
    would get it, queued, when the link heals). Back in touch a whole ``timeout`` after the
    first report that ended the silence (every live node reports at least once a heartbeat,
    and the timeout is several heartbeats). Worked example, timeout 3 s, heartbeat 0.5 s:
    cut at t=10 (last report 9.9): silent from 11.4 on, while the nodes turn unreachable only
    at 12.9; healed at 20, first report 20.2: publishing again from 23.2.
    """

    def __init__(self, timeout):
        self.timeout = timeout
        self.heard_at = float("-inf")
        self.since = float("-inf")   # when the current stretch of hearing began

    def heard(self, now):
        """A report arrived at ``now``."""
        if now - self.heard_at > self.timeout / 2:
            self.since = now
        self.heard_at = now

    def ok(self, now):
        """True when the routes derived now can be trusted."""
        return now - self.heard_at <= self.timeout / 2 and now - self.since >= self.timeout


class RouteFeed:
    """Publishes ``compute()`` (``{(host, path): Route}``) through ``publish(type, body)``;
    ``epoch()`` (the leader epoch while this reconciler leads, else None) is stamped on every
    message so that routers prefer the leader's table."""

    def __init__(self, publish, compute, epoch, interval=1.0, clock=time.monotonic, in_touch=lambda: True):
        self.publish, self.compute, self.epoch, self.in_touch = publish, compute, epoch, in_touch
        self.interval, self.clock = interval, clock
        self.stream = os.urandom(8).hex()
        self.seq = 0
        self.routes = {}
        self._kicks = eventlet.queue.LightQueue(maxsize=1)
        self._snapshot_due = True
        self._thread = None

    def kick(self):
        """Ask for a pass soon (cheap; repeated kicks collapse)."""
        try:
            self._kicks.put_nowait(True)
        except eventlet.queue.Full:
            pass

    def on_subscribe(self):
        """A router joined or asked again: the next pass sends a snapshot."""
        self._snapshot_due = True
        self.kick()

    def step(self):
        """One pass: publish a delta when the table changed and this reconciler was in touch with
        the agents when it was derived, and a snapshot when one is due."""
        try:
            new = self.compute()
        except Exception as e:   # the store may be down: keep the last table, routers keep serving it
            log.warning("route table not derived (the last one stays published): %s", e)
            new = None
        if new is not None and not self.in_touch():
            # compute() reads the store, which can outlast the touch (a store call hanging through a
            # partition, answered after the heal): the table then counts every node silent since
            # the cut as unreachable. It is dropped; the run loop waits to be back in touch.
            log.info("route table derived out of touch with the agents: not published")
            new = None
        lead = self.leadership()
        if new is not None:
            body = delta_body(self.stream, self.seq + 1, self.routes, new)
            if body is not None:
                self.seq, self.routes = self.seq + 1, new
                self.publish("routes", {**body, **lead})
        if self._snapshot_due:
            self._snapshot_due = False
            self.publish("routes", self.snapshot_body(lead))

    def leadership(self):
        """``{"leader", "epoch"}`` as every message carries them."""
        epoch = self.epoch()
        return {"leader": epoch is not None, "epoch": epoch or 0}

    def snapshot_body(self, lead):
        """The body of a snapshot of the current table."""
        return {"kind": "snapshot", "stream": self.stream, "seq": self.seq, **lead,
                "routes": [route_to_json(self.routes[k]) for k in sorted(self.routes)]}

    def tick(self):
        """Say the current seq (liveness, and the catch for a lost last delta)."""
        self.publish("routes", {"kind": "tick", "stream": self.stream, "seq": self.seq, **self.leadership()})

    def run(self):
        """Passes on kicks and every ``interval``, a tick every ``interval``; until killed. While
        ``in_touch()`` is false (this reconciler hears no agent, or has not heard them long
        enough since it did again) it publishes nothing at all: its table would be wrong (every
        node unreachable, no instance ready), and its silence makes the routers serve another
        reconciler's table or their last one."""
        next_tick = self.clock()
        while True:
            try:
                self._kicks.get(timeout=max(0.0, next_tick - self.clock()))
                eventlet.sleep(COALESCE)
            except eventlet.queue.Empty:
                pass
            if not self.in_touch():
                next_tick = self.clock() + self.interval
                continue
            self.step()
            if self.clock() >= next_tick:
                self.tick()
                next_tick = self.clock() + self.interval

    def start(self):
        """Run in a green thread; returns at once."""
        self._thread = eventlet.spawn(self.run)
        return self

    def stop(self):
        """Stop the green thread."""
        if self._thread is not None:
            self._thread.kill()
            self._thread = None

    def table_json(self):
        """The published table for ``GET /v1/routes``: each route with its ready backends."""
        return [{**route_to_json(self.routes[k]), "ready": len(self.routes[k].backends)} for k in sorted(self.routes)]

