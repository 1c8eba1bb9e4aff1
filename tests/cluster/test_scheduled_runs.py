"""Scheduled runs across a partition: the leader's host is cut off from the store and from every
agent right at a slot boundary, the other reconciler takes over, the cut one comes back believing
it leads; each slot still runs exactly once (tests/e2e/cronproof.py's ticker)."""
import shutil
import time

from tests.cluster import figures
from tests.e2e.cluster import wait_for
from tests.e2e.cronproof import EVERY, count, lines, shared_dir, write_app


def test_each_slot_runs_once_while_the_leader_is_cut_off_and_comes_back(fleet):
    out = shared_dir()
    try:
        fleet.corral("apply", "-f", write_app(fleet.workdir, out), timeout=60)
        wait_for("the first run", lambda: lines(out), timeout=120)
        first = int(lines(out)[0][0]) + EVERY
        old = wait_for("a leader", fleet.leader, timeout=20)
        new = "r2" if old == "r1" else "r1"
        boundary = (int(time.time()) // EVERY + 1) * EVERY
        time.sleep(max(0.0, boundary - time.time() - 0.05))
        fleet.dc.cut(old)
        cut = time.monotonic()
        try:
            wait_for(f"{new} to lead", lambda: (fleet.get("/healthz", new) or {}).get("leader"),
                     timeout=3 * fleet.timings["lease_ttl"] + 10, interval=0.1)
            took_over = time.monotonic() - cut
            time.sleep(3 * EVERY)
        finally:
            fleet.dc.heal(old)
        back = time.time()
        wait_for(f"{old} to reach the store again", lambda: fleet.get("/v1/nodes", old, store_down_ok=True),
                 timeout=60)
        fleet.heard_from_after(back + 2 * EVERY, reconciler=old, timeout=60)
        last = int(time.time()) // EVERY * EVERY
        wait_for(f"every slot up to {last}", lambda: {int(g[0]) for g in lines(out)} >= set(
            range(first, last + 1, EVERY)), timeout=60)
        got = count(out, first, last)
        figures.record("10 cron: leader cut off at a slot boundary", detect=took_over, recover=got["latency_max"],
                       lost=got["skips"], died=len(fleet.died()),
                       note=f"{got['slots']} slots, {got['runs']} runs, {got['duplicates']} duplicates")
        assert (got["duplicates"], got["skips"], got["runs"]) == (0, 0, got["slots"]), got
        assert not (fleet.get("/healthz", old) or {}).get("leader") or not (fleet.get("/healthz", new) or {}).get(
            "leader"), "two reconcilers claim the lease"
        assert not fleet.died()
    finally:
        shutil.rmtree(out, ignore_errors=True)
