"""Rollout history (the last revisions of each app, fenced) and node drain flags, on both backends."""
import pytest

from corral.store import Fenced, RevisionRecord


def rev(n, app="hello", image="sha256:x"):
    return RevisionRecord(app=app, revision=n, hash=f"h{n}", image=image, spec={"processes": {"web": {}}, "n": n},
                          source_digest=f"sha256:{n}", generation=n, created_at=float(n))


def test_revisions_keep_the_newest_ten_per_app_newest_first(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.record_revisions(epoch, [rev(n) for n in range(1, 12)])
    store.record_revisions(epoch, [rev(12), rev(1, app="other")])
    got = store.list_revisions("hello")
    assert [r.revision for r in got] == list(range(12, 2, -1))
    assert got[0] == rev(12)
    assert [r.revision for r in store.list_revisions("other")] == [1]


def test_recording_a_known_revision_number_changes_nothing(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.record_revisions(epoch, [rev(1)])
    store.record_revisions(epoch, [rev(1, image="sha256:other")])
    assert store.list_revisions("hello") == [rev(1)]


def test_a_stale_epoch_records_no_revision(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.release_lease("leader", "r1")
    store.acquire_lease("leader", "r2", ttl=60)
    with pytest.raises(Fenced):
        store.record_revisions(epoch, [rev(1)])
    assert store.list_revisions("hello") == []


def test_drain_cordons_and_uncordon_clears_both(store):
    store.upsert_node("node-1", "10.0.0.1", {}, {"cpu": 1}, seen_at=1.0)
    assert store.set_node_cordoned("node-1", True, draining=True) is True
    n = store.list_nodes()[0]
    assert (n.cordoned, n.draining) == (True, True)
    store.upsert_node("node-1", "10.0.0.1", {}, {"cpu": 1}, seen_at=2.0)
    assert store.list_nodes()[0].draining is True
    store.set_node_cordoned("node-1", False)
    n = store.list_nodes()[0]
    assert (n.cordoned, n.draining) == (False, False)
    assert store.set_node_cordoned("nope", True, draining=True) is False


def test_add_events_appends_many_in_order(store):
    store.add_events([("app", "hello", "Scheduled", f"instance {i}", "reconciler/r1") for i in range(3)])
    store.add_events([])
    assert [e.message for e in store.list_events(kind="app", name="hello")] == [f"instance {i}" for i in range(3)]


def test_set_app_statuses_writes_all_in_one_go_and_names_the_missing(store):
    store.put_source("sha256:s", b"x")
    spec = {"source": "./x", "processes": {"web": {"command": "x"}}}
    store.apply_apps([{"name": n, "labels": {}, "spec": spec, "source_digest": "sha256:s"} for n in ("a", "b")],
                     actor="test")
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    before = store.get_app("a").resource_version
    assert store.set_app_statuses({"a": {"ready": 1}, "b": {"ready": 2}, "gone": {}}, epoch) == ["gone"]
    assert (store.get_app("a").status, store.get_app("b").status) == ({"ready": 1}, {"ready": 2})
    assert store.set_app_statuses({"a": {"ready": 1}}, epoch) == []
    assert store.get_app("a").resource_version == before + 1  # an unchanged status is no write
    store.release_lease("leader", "r1")
    store.acquire_lease("leader", "r2", ttl=60)
    with pytest.raises(Fenced):
        store.set_app_statuses({"a": {"ready": 9}}, epoch)
    assert store.get_app("a").status == {"ready": 1}


def test_upsert_nodes_writes_many_and_keeps_cordon(store):
    store.upsert_nodes([(f"n{i}", "10.0.0.1", {"i": str(i)}, {"cpu": 1}, 1.0) for i in range(3)])
    store.set_node_cordoned("n1", True)
    store.upsert_nodes([("n1", "10.0.0.9", {}, {"cpu": 2}, 2.0)])
    nodes = {n.name: n for n in store.list_nodes()}
    assert sorted(nodes) == ["n0", "n1", "n2"]
    assert (nodes["n1"].address, nodes["n1"].cordoned, nodes["n1"].first_seen, nodes["n1"].last_seen) == \
        ("10.0.0.9", True, 1.0, 2.0)
