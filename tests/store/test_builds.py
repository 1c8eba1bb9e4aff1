"""The build queue: idempotent enqueue, exclusive claims, stale reclaim, outcomes."""
import threading

import pytest

from corral.store.base import Conflict


def test_enqueue_is_idempotent_per_key(store):
    first = store.enqueue_build("k1", "hello", {"python": "3.11", "requirements": ["flask"]})
    again = store.enqueue_build("k1", "hello", {"python": "other"})
    assert again == first
    assert (first.state, first.inputs, first.phases, first.worker) == (
        "queued", {"python": "3.11", "requirements": ["flask"]}, {}, None)
    assert store.get_build("k1") == first
    assert store.get_build("missing") is None


def test_claim_takes_oldest_first_and_marks_building(store):
    for key in ("k1", "k2"):
        store.enqueue_build(key, "hello", {})
    claimed = store.claim_build("b1", stale_after=60)
    assert (claimed.key, claimed.state, claimed.worker) == ("k1", "building", "b1")
    assert claimed.started_at is not None
    assert store.claim_build("b2", stale_after=60).key == "k2"
    assert store.claim_build("b3", stale_after=60) is None


def test_finish_records_the_outcome(store):
    store.enqueue_build("k1", "hello", {})
    build = store.claim_build("b1", stale_after=60)
    store.finish_build(build.id, "b1", state="succeeded", image="sha256:abc",
                       cache="miss", phases={"resolve": 0.4, "install": 1.5})
    done = store.get_build("k1")
    assert (done.state, done.image, done.cache, done.phases, done.error) == (
        "succeeded", "sha256:abc", "miss", {"resolve": 0.4, "install": 1.5}, None)
    assert done.finished_at >= done.started_at


def test_failed_build_stays_failed_until_retried(store):
    store.enqueue_build("k1", "hello", {})
    build = store.claim_build("b1", stale_after=60)
    store.finish_build(build.id, "b1", state="failed", error="pip could not find flask==99.")
    assert store.enqueue_build("k1", "hello", {}).state == "failed"
    assert store.claim_build("b1", stale_after=60) is None
    store.retry_build("k1")
    retried = store.get_build("k1")
    assert (retried.state, retried.error, retried.worker) == ("queued", None, None)
    assert store.claim_build("b2", stale_after=60).id == build.id


def test_finish_with_an_unknown_state_is_refused(store):
    store.enqueue_build("k1", "hello", {})
    build = store.claim_build("b1", stale_after=60)
    with pytest.raises(ValueError, match="'done'"):
        store.finish_build(build.id, "b1", state="done")


def test_silent_worker_loses_its_build(store):
    store.enqueue_build("k1", "hello", {})
    build = store.claim_build("b1", stale_after=60)
    assert store.claim_build("b2", stale_after=3600) is None  # b1 is not silent for an hour
    reclaimed = store.claim_build("b2", stale_after=0)         # but it is silent "for 0 s"
    assert (reclaimed.id, reclaimed.worker) == (build.id, "b2")
    with pytest.raises(Conflict, match="b1"):
        store.heartbeat_build(build.id, "b1")
    with pytest.raises(Conflict):
        store.finish_build(build.id, "b1", state="succeeded", image="sha256:stale")
    store.heartbeat_build(build.id, "b2")
    store.finish_build(build.id, "b2", state="succeeded", image="sha256:good")
    assert store.get_build("k1").image == "sha256:good"


def test_list_builds_newest_first(store):
    for key, app in (("k1", "a"), ("k2", "b"), ("k3", "a")):
        store.enqueue_build(key, app, {})
    assert [b.key for b in store.list_builds()] == ["k3", "k2", "k1"]
    assert [b.key for b in store.list_builds(app="a")] == ["k3", "k1"]


def test_concurrent_claimers_never_share_a_build(store, open_twin):
    keys = [f"k{i:03d}" for i in range(60)]
    for key in keys:
        store.enqueue_build(key, "hello", {})
    claimers = [open_twin() for _ in range(4)]
    claimed = {i: [] for i in range(len(claimers))}
    barrier = threading.Barrier(len(claimers))

    def drain(i):
        barrier.wait()
        while (build := claimers[i].claim_build(f"b{i}", stale_after=3600)) is not None:
            claimed[i].append(build.key)
    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(claimers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [key for keys_ in claimed.values() for key in keys_]
    assert sorted(every) == keys  # each build claimed exactly once
    for i, keys_ in claimed.items():
        assert all(store.get_build(k).worker == f"b{i}" for k in keys_)


def test_the_leader_reads_each_build_as_its_state_alone(store):
    """A pass over every app reads no inputs, lock or log tail (bounded reads)."""
    store.enqueue_build("k1", "hello", {"requirements": ["x" * 1000]})
    build = store.claim_build("b1", stale_after=60)
    layers = [{"kind": "env", "id": "sha256:" + "e" * 64, "sha256": "e" * 64, "size": 1}]
    store.finish_build(build.id, "b1", state="succeeded", image="sha256:abc", layers=layers, lock="x==1\n")
    store.enqueue_build("k2", "other", {})
    states = {b.key: b for b in store.list_build_states()}
    assert (states["k1"].app, states["k1"].state, states["k1"].image, states["k1"].layers) == (
        "hello", "succeeded", "sha256:abc", layers)
    assert (states["k2"].state, states["k2"].image, states["k2"].error) == ("queued", None, None)
    assert not hasattr(states["k1"], "inputs") and not hasattr(states["k1"], "log_tail")
