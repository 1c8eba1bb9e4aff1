"""Rollout history (the last revisions of each app, fenced) and node drain flags, on both backends."""
import pytest

from corral.store import Fenced, RevisionRecord


def rev(n, app="hello", image="sha256:x"):
    return RevisionRecord(app=app, revision=n, hash=f"h{n}", image=image, spec={"processes": {"web": {}}, "n": n},
                          source_digest=f"sha256:{n}", generation=n, created_at=float(n))


def test_revisions_keep_the_newest_ten_per_app_newest_first(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    for n in range(1, 13):
        store.record_revision(epoch, rev(n))
    store.record_revision(epoch, rev(1, app="other"))
    got = store.list_revisions("hello")
    assert [r.revision for r in got] == list(range(12, 2, -1))
    assert got[0] == rev(12)
    assert [r.revision for r in store.list_revisions("other")] == [1]


def test_recording_a_known_revision_number_changes_nothing(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.record_revision(epoch, rev(1))
    store.record_revision(epoch, rev(1, image="sha256:other"))
    assert store.list_revisions("hello") == [rev(1)]


def test_a_stale_epoch_records_no_revision(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.release_lease("leader", "r1")
    store.acquire_lease("leader", "r2", ttl=60)
    with pytest.raises(Fenced):
        store.record_revision(epoch, rev(1))
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
