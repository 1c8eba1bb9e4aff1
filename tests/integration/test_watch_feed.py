"""The change feed in its own process, over views that the test changes: a watcher gets the listing,
then only what changed, in order; one that does not read is dropped at its buffer's bound and told so;
no one watching means no reading."""
import json

import corral.green  # noqa: F401  (silences eventlet's banner)
import eventlet

from reconciler.watch import DROPPED, SYNCED, ChangeFeed, EventStream


class Views:
    """Views the test changes; counts the reads."""

    def __init__(self):
        self.apps = {}
        self.reads = 0

    def app(self):
        self.reads += 1
        return dict(self.apps)


def frames(data):
    return [json.loads(f[len(b"data: "):]) for f in data.split(b"\n\n") if f.startswith(b"data: ")]


def test_a_watcher_gets_the_listing_then_each_change_once():
    views = Views()
    views.apps = {"a": {"name": "a", "ready": 0}}
    feed = ChangeFeed({"app": views.app}, interval=0.01)
    watcher, initial = feed.subscribe(("app",))
    stream = iter(EventStream(feed, watcher, initial, keepalive=0.05))
    first = next(stream)
    assert first.endswith(SYNCED) and frames(first) == [
        {"kind": "app", "type": "ADDED", "object": {"name": "a", "ready": 0}}]
    views.apps = {"a": {"name": "a", "ready": 1}, "b": {"name": "b", "ready": 0}}
    got = []
    while len(got) < 2:
        got += frames(next(stream))
    assert [(c["type"], c["object"]["name"]) for c in got] == [("MODIFIED", "a"), ("ADDED", "b")]
    eventlet.sleep(0.05)
    assert next(stream) == b": keepalive\n\n"   # nothing changed: nothing sent but the keepalive
    stream.close()
    EventStream(feed, watcher, []).close()
    assert not feed.watchers


def test_a_watcher_that_does_not_read_is_dropped_at_its_bound_and_told():
    views = Views()
    feed = ChangeFeed({"app": views.app}, interval=0.01, buffer=5)
    watcher, initial = feed.subscribe(("app",))
    reader, _ = feed.subscribe(("app",))
    for n in range(8):
        views.apps = {"a": {"name": "a", "ready": n}}
        eventlet.sleep(0.03)
        while not reader.queue.empty():   # the other watcher keeps up
            reader.queue.get_nowait()
    assert watcher.dropped and watcher not in feed.watchers
    assert watcher.queue.qsize() == 5, "the slow watcher's queue grew past its bound"
    assert reader in feed.watchers and not reader.dropped
    out = list(EventStream(feed, watcher, initial, keepalive=0.05))
    assert out[-1] == DROPPED
    feed.unsubscribe(reader)


def test_no_one_watching_means_no_reads():
    views = Views()
    feed = ChangeFeed({"app": views.app}, interval=0.01)
    watcher, _ = feed.subscribe(("app",))
    eventlet.sleep(0.05)
    feed.unsubscribe(watcher)
    eventlet.sleep(0.05)
    reads = views.reads
    eventlet.sleep(0.1)
    assert views.reads == reads and feed.poller is None and not feed.views
