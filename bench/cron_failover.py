"""Exactly once under failover, the long version: slots, runs, duplicates, skips, latency.

Starts a `corral up` cluster (two reconcilers, two nodes; with ``--postgres``
on a scratch schema of the test PostgreSQL, else on SQLite), applies an app whose process is scheduled
``every 2s`` (each run appends its slot and the time it started to a file),
and for ``--window`` seconds SIGKILLs the leader a moment before a slot
boundary, again and again, each time once a new leader leads (`corral up`
starts the killed one again). Then it waits until every slot of the window
ran, and prints how many slots, runs, duplicates and skips there were, and the
latency from slot to process start (p50, p99, max). Without failover the
latency is the pass and the start of a process; a slot that falls while no
reconciler leads waits for the lease to pass (``lease_ttl``, 3 s here).

Run: ``.venv/bin/python bench/cron_failover.py [--window 120] [--postgres]``
(the e2e test runs the same for ``CORRAL_CRON_WINDOW`` seconds, 10 by default).
"""
import argparse
import contextlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.e2e.cluster import UpCluster  # noqa: E402
from tests.e2e.cronproof import prove  # noqa: E402
from tests.pg import postgres_dsn  # noqa: E402
from tests.support import scratch_schema  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=120.0, help="seconds of leader kills (default 120)")
    p.add_argument("--calm", type=float, default=30.0,
                   help="seconds of slots without kills first, for the latency without failover (default 30)")
    p.add_argument("--postgres", action="store_true", help="a scratch schema of the test PostgreSQL (default: SQLite)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="corral-bench-cron-")
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(scratch_schema(postgres_dsn(), prefix="bench")) if args.postgres else None
        cluster = UpCluster(work, nodes=2, store=store)
        started = time.time()
        try:
            figures = prove(cluster, work, args.window, log=lambda line: print(f"  {line}", flush=True),
                            calm=args.calm)
        finally:
            cluster.down()
    print(f"\nstore: {'PostgreSQL' if args.postgres else 'SQLite'}; window {args.window:g}s; "
          f"wall {time.time() - started:.0f}s; leader kills {figures['kills']}")
    print("| window | slots | runs | duplicates | skips | slot to start p50 | p99 | max |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [("leader killed at slot boundaries", figures)] + ([("calm", figures["calm"])] if "calm" in figures else [])
    for name, f in rows:
        print(f"| {name} | {f['slots']} | {f['runs']} | {f['duplicates']} | {f['skips']} | "
              f"{f['latency_p50']:.2f} s | {f['latency_p99']:.2f} s | {f['latency_max']:.2f} s |")
    return 0 if all(f["duplicates"] == f["skips"] == 0 for _, f in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
