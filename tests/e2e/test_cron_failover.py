"""Scheduled runs happen exactly once per slot while the leader is SIGKILLed at slot
boundaries again and again (tests/e2e/cronproof.py says how). The window is
``CORRAL_CRON_WINDOW`` seconds (default 20); bench/cron_failover.py runs the
long version and prints the figures."""
import contextlib
import os

import pytest

from tests.e2e.cluster import UpCluster
from tests.e2e.cronproof import prove
from tests.pg import PostgresUnavailable, postgres_dsn
from tests.support import need, scratch_schema

WINDOW = float(os.environ.get("CORRAL_CRON_WINDOW", "20"))


@pytest.fixture
def cluster(tmp_path):
    with contextlib.ExitStack() as stack:
        try:
            base = postgres_dsn()
        except PostgresUnavailable as e:
            need("postgresql", str(e))
        store = stack.enter_context(scratch_schema(base, prefix="cron"))
        c = UpCluster(tmp_path, nodes=2, store=store)
        yield c
        assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()


def test_each_slot_runs_exactly_once_while_the_leader_is_killed_at_slot_boundaries(cluster, tmp_path):
    figures = prove(cluster, tmp_path, WINDOW)
    print("cron failover:", figures)
    assert figures["kills"] >= 2
    assert (figures["duplicates"], figures["skips"]) == (0, 0), figures
    assert figures["runs"] == figures["slots"]
