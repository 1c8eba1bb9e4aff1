"""What the change stream costs a reconciler: one pass of the feed over a large view, and its memory bound.

A pass (reconciler/watch.py ``ChangeFeed.poll``) diffs the view it read against the last one
(corral/changes.py) and encodes a frame per change for the watchers of that kind. Here the
views are ``--instances`` instances as `get instances -o json` shows them, of which ``--changed``
change between two passes, fanned out to ``--watchers`` watchers; the reading of the view itself
(the store and the observed view, as `get instances` does) is not counted. Printed: the median and
p95 of a pass's CPU time over ``-n`` passes, the size of one instance's frame, and the most a
watcher can hold (its queue's bound times that size).

Run: ``.venv/bin/python bench/watch.py [--instances 10000] [--changed 100] [--watchers 100] [-n 20]``

Figures only: nothing here is asserted in a test.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import corral.green  # noqa: F401,E402  (silences eventlet's banner)
from reconciler.watch import BUFFER, ChangeFeed, frame  # noqa: E402


def instance(n, state="running"):
    """One instance as `get instances -o json` shows it."""
    return {"id": f"app{n // 10}-web-{n:05x}", "app": f"app{n // 10}", "process": "web", "node": f"node-{n % 1000}",
            "state": state, "ready": state == "running", "address": "10.0.3.17", "port": 40000 + n % 20000,
            "pid": 10000 + n, "revision": "3", "image": "sha256:" + "ab" * 32, "restarts": 0,
            "started_at": "2026-12-03T07:20:38Z", "exit_code": None, "backoff_until": None, "message": None,
            "desired": True}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=10000)
    p.add_argument("--changed", type=int, default=100)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("-n", type=int, default=20)
    args = p.parse_args()
    base = {i["id"]: i for i in (instance(n) for n in range(args.instances))}
    turn = {"n": 0}

    def view():   # every other pass, --changed instances go from running to stopping and back
        turn["n"] += 1
        if turn["n"] % 2:
            return base
        out = dict(base)
        for n in range(args.changed):
            i = instance(n * (args.instances // max(1, args.changed)), "stopping")
            out[i["id"]] = i
        return out
    feed = ChangeFeed({"instance": view}, buffer=10 ** 9, max_watchers=args.watchers)
    for _ in range(args.watchers):
        feed.subscribe(("instance",))
    times = []
    for _ in range(args.n):
        start = time.process_time()
        feed.poll()
        times.append(time.process_time() - start)
        for w in feed.watchers:   # the watchers keep up
            while not w.queue.empty():
                w.queue.get_nowait()
    size = len(frame({"kind": "instance", "type": "MODIFIED", "object": instance(0)}))
    times.sort()
    print(f"instances {args.instances}, changed per pass {args.changed}, watchers {args.watchers}, passes {args.n}")
    print(f"pass CPU: median {statistics.median(times) * 1000:.1f} ms, p95 {times[int(len(times) * 0.95) - 1] * 1000:.1f} ms")
    print(f"one instance change: {size} bytes; a watcher holds at most {BUFFER} of them: {BUFFER * size / 1024:.0f} KiB")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
