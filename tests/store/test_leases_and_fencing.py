"""The leader lease and the epoch checks that make a stale leader harmless."""
import threading
import time

import psycopg2
import pytest

from corral.store.base import DesiredInstance, Fenced
from corral.store.postgres import PostgresStore


def instance(id="hello-web-1", node="node-1", revision="1"):
    return DesiredInstance(id=id, app="hello", process="web", node=node, revision=revision,
                           image="sha256:img", spec={"command": ["serve"], "port": True},
                           created_at=1000.0)


def app_doc(name="hello"):
    return {"name": name, "labels": {}, "spec": {"processes": {}}, "source_digest": "sha256:s"}


def test_first_holder_gets_epoch_1(store):
    lease = store.acquire_lease("leader", "r1", ttl=10)
    assert (lease.name, lease.holder, lease.epoch) == ("leader", "r1", 1)
    assert store.get_lease("leader") == lease


def test_renewal_keeps_epoch_and_extends(store):
    first = store.acquire_lease("leader", "r1", ttl=10)
    renewed = store.acquire_lease("leader", "r1", ttl=10)
    assert renewed.epoch == first.epoch
    assert renewed.expires_at >= first.expires_at


def test_held_lease_is_refused_to_another(store):
    store.acquire_lease("leader", "r1", ttl=60)
    assert store.acquire_lease("leader", "r2", ttl=60) is None
    assert store.get_lease("leader").holder == "r1"


def test_expired_lease_is_taken_over_with_a_new_epoch(store):
    store.acquire_lease("leader", "r1", ttl=0)  # expires at once
    taken = store.acquire_lease("leader", "r2", ttl=60)
    assert (taken.holder, taken.epoch) == ("r2", 2)


def test_released_lease_goes_to_the_next_with_a_new_epoch(store):
    store.acquire_lease("leader", "r1", ttl=60)
    store.release_lease("leader", "r2")  # not the holder: nothing happens
    assert store.acquire_lease("leader", "r2", ttl=60) is None
    store.release_lease("leader", "r1")
    assert store.acquire_lease("leader", "r2", ttl=60).epoch == 2


def test_missing_lease_is_none(store):
    assert store.get_lease("leader") is None


def test_current_epoch_writes_desired(store):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.write_desired(epoch, upsert=[instance("b"), instance("a")], delete=[])
    assert [d.id for d in store.list_desired()] == ["a", "b"]
    moved = instance("a", node="node-2", revision="2")
    store.write_desired(epoch, upsert=[moved], delete=["b"])
    assert store.list_desired() == [moved]
    assert store.list_desired(app="other") == []


def test_stale_epoch_is_fenced_and_writes_nothing(store):
    old = store.acquire_lease("leader", "r1", ttl=0).epoch
    store.apply_apps([app_doc()], actor="cli")
    store.write_desired(old, upsert=[instance("kept")], delete=[])
    new = store.acquire_lease("leader", "r2", ttl=60).epoch
    assert new == old + 1
    with pytest.raises(Fenced, match=f"epoch {old}"):
        store.write_desired(old, upsert=[instance("intruder")], delete=["kept"])
    with pytest.raises(Fenced):
        store.set_app_status("hello", {"stale": True}, old)
    with pytest.raises(Fenced):
        store.purge_app("hello", old)
    assert [d.id for d in store.list_desired()] == ["kept"]
    assert store.get_app("hello").status == {}
    store.write_desired(new, upsert=[], delete=["kept"])
    assert store.list_desired() == []


def test_writes_without_any_lease_are_fenced(store):
    with pytest.raises(Fenced):
        store.write_desired(1, upsert=[instance()], delete=[])
    assert store.list_desired() == []


def test_two_contenders_get_one_lease(store, open_twin):
    """Many rounds of two daemons racing for an expired lease: one wins each round."""
    stores = [store, open_twin()]
    for round_ in range(10):
        winners = []
        barrier = threading.Barrier(2)

        def contend(s, holder):
            barrier.wait()
            lease = s.acquire_lease("leader", holder, ttl=0 if round_ % 2 else 60)
            if lease:
                winners.append(lease)
        threads = [threading.Thread(target=contend, args=(s, f"r{i}-{round_}")) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if round_ % 2 == 0:
            assert len(winners) == 1
        store.release_lease("leader", winners[0].holder)
    assert store.get_lease("leader").epoch >= 10


def test_postgres_takeover_waits_for_an_inflight_fenced_write(pg_schema_dsn):
    """A fenced write holds the lease row FOR SHARE, so a takeover queues behind it.

    (SQLite has no row locks: BEGIN IMMEDIATE serialises every writer.)
    """
    store_dsn = pg_schema_dsn
    store = PostgresStore(store_dsn)
    store.migrate()
    store.acquire_lease("leader", "r1", ttl=0)
    inflight = psycopg2.connect(store_dsn)  # plays the old leader, mid-write
    with inflight.cursor() as cur:
        cur.execute("SELECT epoch FROM leases WHERE name = 'leader' FOR SHARE")
        cur.execute("SELECT pg_backend_pid()")
    done = []
    taker = threading.Thread(target=lambda: done.append(store.acquire_lease("leader", "r2", ttl=60)))
    taker.start()
    watcher = psycopg2.connect(store_dsn)
    watcher.autocommit = True
    deadline = time.monotonic() + 10
    with watcher.cursor() as cur:
        while True:  # poll until the takeover is seen waiting on the row lock
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND application_name = 'corral'")
            waiting = cur.fetchone()[0] == 1
            if waiting or time.monotonic() > deadline:
                break
    assert waiting and done == [], "the takeover must wait for the in-flight write"
    inflight.commit()
    taker.join(timeout=10)
    assert done and done[0].epoch == 2
    inflight.close()
    watcher.close()
    store.close()
