"""The change stream: ``GET /v1/watch`` as server-sent events, for `corral get -w` and the dashboard.

One :class:`ChangeFeed` per reconciler (any reconciler: every one hears every
agent and reads the same store) reads the views of the kinds someone watches
every ``interval`` seconds, and sends each watcher what
:func:`corral.changes.diff` finds. A quiet cluster costs one read per
kind and interval while anyone watches, and nothing when no one does.

A watcher first gets every object (ADDED), then ``event: synced``, then the
changes. Each watcher has a bounded queue of encoded frames: one that does not
read fast enough to keep it from filling is dropped (told so, if it is still
there to hear it), never allowed to grow the reconciler's memory. The number
of watchers is bounded too (:data:`MAX_WATCHERS`), well under eventlet.wsgi's
pool of green threads, so streams that stay open forever cannot starve the
rest of the API. A comment line every :data:`KEEPALIVE` seconds keeps proxies
from closing a quiet stream and lets the client tell a quiet one from a dead one.
"""
import json
import logging

import eventlet
import eventlet.queue
import eventlet.semaphore

from corral.changes import diff, listing

log = logging.getLogger(__name__)

BUFFER = 1000         # frames queued per watcher before it is dropped as too slow
MAX_WATCHERS = 100    # streams open at once on one reconciler (eventlet.wsgi's pool holds 1024)
KEEPALIVE = 5.0       # seconds between keepalive comments on a quiet stream


class TooManyWatchers(Exception):
    """The reconciler serves :data:`MAX_WATCHERS` streams already."""


def frame(change):
    """One change as a server-sent event (its JSON has no newline, so one ``data:`` line holds it)."""
    return b"data: " + json.dumps(change, separators=(",", ":")).encode("utf-8") + b"\n\n"


SYNCED = b"event: synced\ndata: {}\n\n"
def ended(sentence):
    """The last event of a stream the reconciler ends: ``dropped``, with why (the CLI then asks again)."""
    return b"event: dropped\ndata: " + json.dumps({"error": sentence}).encode() + b"\n\n"


DROPPED = ended("the reconciler stopped this watch: it was not read as fast as the changes came")


class Watcher:
    """One client's subscription: the kinds it wants, and its bounded queue of frames."""

    def __init__(self, kinds, size):
        self.kinds = frozenset(kinds)
        self.queue = eventlet.queue.LightQueue(maxsize=size)
        self.dropped = False


class ChangeFeed:
    """Reads views and fans their changes out to watchers.

    ``sources``: ``{kind: () -> {key: object}}``, each reading one view now (may raise
    StoreError: that kind is then read again next time)."""

    def __init__(self, sources, interval=1.0, buffer=BUFFER, max_watchers=MAX_WATCHERS):
        self.sources = sources
        self.interval = interval
        self.buffer = buffer
        self.max_watchers = max_watchers
        self.views = {}          # kind -> the last view read, for the kinds someone watches
        self.watchers = set()
        self.lock = eventlet.semaphore.Semaphore()   # one reader of the views at a time
        self.poller = None

    def subscribe(self, kinds):
        """``(watcher, initial changes)``: every object of ``kinds`` as of the feed's view, which the
        watcher's changes then continue from. TooManyWatchers when the feed is full."""
        if len(self.watchers) >= self.max_watchers:
            raise TooManyWatchers(f"this reconciler serves {self.max_watchers} watches already")
        watcher = Watcher(kinds, self.buffer)
        with self.lock:
            initial = []
            for kind in kinds:
                if kind not in self.views:
                    self.views[kind] = self.sources[kind]()
                initial += listing(kind, self.views[kind])
            self.watchers.add(watcher)
        if self.poller is None:
            self.poller = eventlet.spawn(self._run)
        return watcher, initial

    def unsubscribe(self, watcher):
        """Forget ``watcher`` (its stream ended); idempotent."""
        self.watchers.discard(watcher)

    def _run(self):
        while self.watchers:
            eventlet.sleep(self.interval)
            self.poll()
        self.poller = None

    def poll(self):
        """Read the view of every kind watched, and queue its changes to the watchers of that kind."""
        with self.lock:
            wanted = {k for w in self.watchers for k in w.kinds}
            for kind in [k for k in self.views if k not in wanted]:
                del self.views[kind]       # no one watches it: a later watcher must not start from a stale view
            for kind in sorted(wanted):
                try:
                    new = self.sources[kind]()
                except Exception as e:     # the store is down, or a bug: try again next time
                    log.warning("watch: cannot read the %ss now: %s", kind, e)
                    continue
                changes = diff(kind, self.views.get(kind, {}), new)
                self.views[kind] = new
                self.publish(kind, [frame(c) for c in changes])

    def publish(self, kind, frames):
        """Queue ``frames`` (of ``kind``) to each watcher of it; drop a watcher whose queue is full."""
        for watcher in list(self.watchers):
            if kind not in watcher.kinds:
                continue
            for f in frames:
                try:
                    watcher.queue.put_nowait(f)
                except eventlet.queue.Full:
                    watcher.dropped = True
                    self.watchers.discard(watcher)
                    log.warning("watch: a client read too slowly and was dropped")
                    break


class EventStream:
    """The response body of one watch: the initial listing, ``synced``, then changes as they come."""

    content_type = "text/event-stream"
    headers = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")]

    def __init__(self, feed, watcher, initial, keepalive=KEEPALIVE, refusal=lambda: None):
        self.feed, self.watcher, self.initial, self.keepalive = feed, watcher, initial, keepalive
        self.refusal = refusal   # () -> a sentence once the watcher's token is refused (Credentials.checker), else None

    def __iter__(self):
        yield b"".join(frame(c) for c in self.initial) + SYNCED
        self.initial = None
        queue = self.watcher.queue
        while not self.watcher.dropped:
            try:
                first = queue.get(timeout=self.keepalive)
            except eventlet.queue.Empty:
                first = None
            refused = self.refusal()
            if refused:
                yield ended(refused)
                return
            if first is None:
                yield b": keepalive\n\n"
                continue
            batch = [first]
            while not queue.empty() and len(batch) < 100:   # what is queued goes out in one write
                batch.append(queue.get_nowait())
            yield b"".join(batch)
        yield DROPPED

    def close(self):
        """The client is gone or done (the WSGI server calls this): stop feeding it."""
        self.feed.unsubscribe(self.watcher)
