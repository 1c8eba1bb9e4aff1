"""Events, source archives and nodes."""
import os


def test_events_are_listed_oldest_first_newest_kept(store):
    for i in range(5):
        store.add_event("app", "hello", "Scheduled", f"step {i}", "reconciler/r1")
    store.add_event("node", "node-1", "Cordoned", "cordoned by hand", "cli")
    events = store.list_events(limit=3)
    assert [e.message for e in events] == ["step 3", "step 4", "cordoned by hand"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[0].time <= events[-1].time


def test_events_filter_by_object(store):
    store.add_event("app", "hello", "Created", "a", "cli")
    store.add_event("app", "other", "Created", "b", "cli")
    store.add_event("instance", "hello", "Started", "c", "agent/node-1")
    assert [e.message for e in store.list_events(kind="app", name="hello")] == ["a"]
    assert [e.message for e in store.list_events(kind="app")] == ["a", "b"]
    assert [e.message for e in store.list_events(name="hello")] == ["a", "c"]
    first = store.list_events(kind="app")[0]
    assert (first.kind, first.name, first.reason, first.actor) == ("app", "hello", "Created", "cli")


def test_sources_round_trip_and_put_is_idempotent(store):
    data = os.urandom(4096) + b"\x00\xff"
    assert store.has_source("sha256:x") is False
    assert store.get_source("sha256:x") is None
    store.put_source("sha256:x", data)
    store.put_source("sha256:x", data)
    assert store.has_source("sha256:x") is True
    assert store.get_source("sha256:x") == data


def test_upsert_node_keeps_first_seen_and_cordon(store):
    store.upsert_node("node-2", "10.0.0.2", {"zone": "b"}, {"cpu": 2}, seen_at=100.0)
    store.upsert_node("node-1", "10.0.0.1", {"zone": "a"}, {"cpu": 4, "memory": 8 << 30}, seen_at=100.0)
    assert store.set_node_cordoned("node-1", True) is True
    store.upsert_node("node-1", "10.0.0.9", {"zone": "c"}, {"cpu": 8}, seen_at=200.0)
    [one, two] = store.list_nodes()
    assert (one.name, one.address, one.labels, one.capacity) == ("node-1", "10.0.0.9", {"zone": "c"}, {"cpu": 8})
    assert (one.cordoned, one.first_seen, one.last_seen) == (True, 100.0, 200.0)
    assert (two.name, two.cordoned) == ("node-2", False)


def test_uncordon_and_missing_node(store):
    store.upsert_node("node-1", "10.0.0.1", {}, {}, seen_at=1.0)
    store.set_node_cordoned("node-1", True)
    assert store.set_node_cordoned("node-1", False) is True
    assert store.list_nodes()[0].cordoned is False
    assert store.set_node_cordoned("ghost", True) is False


def test_pruning_keeps_the_newest_events_and_deletes_those_past_their_age(store):
    for i in range(5):
        store.add_event("app", "hello", "Scheduled", f"step {i}", "reconciler/r1")
    assert store.prune_events(max_age=3600, keep=10) == 0
    assert store.prune_events(max_age=3600, keep=2) == 3
    assert [e.message for e in store.list_events()] == ["step 3", "step 4"]
    assert store.prune_events(max_age=-60, keep=10) == 2   # every event is older than a minute from now
    assert store.list_events() == []
