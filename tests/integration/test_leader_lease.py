"""The leader lease against real stores (SQLite and PostgreSQL): one leader among processes that share a
reconciler's name, a restarted reconciler leads again only at a new epoch, and a leader that cannot renew
stops claiming before its lease can have passed on."""
import dataclasses

import pytest

from corral.settings import Timings
from corral.store import StoreError
from reconciler.leader import LeaderLease, process_holder
from tests.support import fresh_store, schema_one_further, wait_for

TIMINGS = dataclasses.replace(Timings(), lease_ttl=1.0, lease_renew=0.2)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with fresh_store(request.param, str(tmp_path)) as s:
        yield s


def test_process_holders_differ_per_process_and_name_the_reconciler():
    assert process_holder("r1", pid=42, nonce="ab") == "r1/42-ab"
    assert process_holder("r1") != process_holder("r1")


def test_two_processes_with_one_name_never_lead_together(store):
    first, second = (LeaderLease(store, process_holder("r1"), TIMINGS) for _ in range(2))
    assert first.tick() == 1
    assert second.tick() is None, "a second process named r1 renewed the first one's lease"
    assert (first.tick(), second.tick()) == (1, None)


def test_a_restarted_reconciler_leads_again_only_after_the_lease_ends_and_at_a_new_epoch(store):
    old = LeaderLease(store, process_holder("r1"), TIMINGS)
    assert old.tick() == 1
    restarted = LeaderLease(store, process_holder("r1"), TIMINGS)   # the old process died without releasing
    assert restarted.tick() is None, "a restarted r1 renewed the lease its predecessor took"
    assert wait_for("the restarted reconciler to lead", restarted.tick, timeout=10, interval=0.1) == 2


def test_a_clean_release_hands_over_at_once(store):
    r1, r2 = LeaderLease(store, process_holder("r1"), TIMINGS), LeaderLease(store, process_holder("r2"), TIMINGS)
    assert (r1.tick(), r2.tick()) == (1, None)
    r1.release()
    assert r1.epoch is None and r2.tick() == 2


class Unreachable:
    """A store that no longer answers (its lease is left as the leader last renewed it)."""

    def acquire_lease(self, *args):
        raise StoreError("the store is unreachable")


def test_a_leader_that_cannot_renew_stops_claiming_before_its_lease_ends(store):
    now = [100.0]
    lease = LeaderLease(store, process_holder("r1"), TIMINGS, clock=lambda: now[0])
    assert lease.tick() == 1
    lease.store = Unreachable()
    now[0] += TIMINGS.lease_ttl - TIMINGS.lease_renew - 0.01
    assert lease.tick() == 1, "still within its own margin"
    now[0] += 0.02
    assert lease.tick() is None, "it must stop acting a renew interval before the store's expiry"


def test_an_older_reconciler_never_leads_a_newer_schema_and_says_so_once(store, caplog):
    lease = LeaderLease(store, process_holder("r-old"), TIMINGS)
    schema_one_further(store)
    with caplog.at_level("ERROR", logger="reconciler.leader"):
        assert [lease.tick() for _ in range(5)] == [None] * 5
    (said,) = [r.getMessage() for r in caplog.records]
    assert "will not lead: the store's schema is version" in said and said.endswith("upgrade this reconciler")
    assert store.get_lease("leader") is None, "the refused reconciler took (or made) the lease"


def test_a_leader_stops_leading_once_the_store_is_migrated_past_it(store):
    lease = LeaderLease(store, process_holder("r-old"), TIMINGS)
    assert lease.tick() == 1
    schema_one_further(store)
    assert lease.tick() is None and lease.epoch is None
