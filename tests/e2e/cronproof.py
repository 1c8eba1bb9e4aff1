"""The exactly-once proof of scheduled runs, shared by the e2e test and bench/cron_failover.py.

A ``corral up`` cluster (two reconcilers) runs an app whose process
``tick`` is scheduled ``every 2s``; each run appends its slot and the time it
started to a file. Meanwhile the leader is SIGKILLed just before a slot
boundary, again and again (``corral up`` starts it again). Afterwards every
slot in the window must appear exactly once: :func:`count` says how many
slots, runs, duplicates and skips there were, and the latency from slot to
start (p50, p99).
"""
import os
import shutil
import signal
import statistics
import tempfile
import time

import yaml

from tests.e2e.cluster import wait_for

EVERY = 2           # seconds between slots
DEADLINE = 60       # startingDeadline: a slot missed during a failover starts late, well within it


def write_app(workdir, out_dir, name="ticker"):
    """An app with no requirements whose scheduled process appends ``SLOT START RUN`` to
    ``out_dir/slots``; returns the manifest's path."""
    src = os.path.join(str(workdir), name)
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "README"), "w") as f:
        f.write("each run appends its slot\n")
    line = f'echo "$CORRAL_SLOT $(date +%s.%N) $CORRAL_RUN" >> {out_dir}/slots'
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": name},
           "spec": {"source": f"./{name}", "processes": {"tick": {
               "command": ["sh", "-c", line], "schedule": f"every {EVERY}s",
               "startingDeadline": f"{DEADLINE}s", "stopGracePeriod": "2s", "history": {"succeeded": 5}}}}}
    path = os.path.join(str(workdir), f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def shared_dir():
    """A folder every app user may append to (not under /tmp: apps get a private /tmp)."""
    path = tempfile.mkdtemp(prefix="corral-cron-", dir="/var/tmp")
    os.chmod(path, 0o1777)
    return path


def lines(out_dir):
    try:
        with open(os.path.join(out_dir, "slots")) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def kill_leaders(cluster, window, log=lambda *a: None):
    """SIGKILL the leader a moment before a slot boundary, again and again for ``window``
    seconds, each time once a new leader leads and the killed one is back as its standby
    (`corral up` starts it again after 1 s, doubling while it keeps dying: killing a leader
    with no standby would measure that wait, not a failover); returns the kills' count and
    the window."""
    start, kills = time.time(), 0
    while time.time() - start < window:
        wait_for("two reconcilers", lambda: len(cluster.daemons("reconciler")) == 2, timeout=90)
        lead = wait_for("a leader", cluster.lead, timeout=60)
        now = time.time()
        boundary = (int(now) // EVERY + 1) * EVERY
        if boundary - now < 0.1:
            boundary += EVERY
        time.sleep(boundary - now - 0.05)
        os.kill(lead[1], signal.SIGKILL)
        kills += 1
        log(f"killed {lead[0]} (pid {lead[1]}, epoch {lead[2]}) at slot boundary {boundary}")
        wait_for("a new leader", lambda: (cluster.lead() or (0, 0, lead[2]))[2] > lead[2], timeout=60)
    return kills, (start, time.time())


def count(out_dir, first, last):
    """Figures over the slots ``first..last`` (epoch seconds, both included)."""
    got = lines(out_dir)
    slots = [int(g[0]) for g in got]
    want = list(range(first, last + 1, EVERY))
    seen = {s: slots.count(s) for s in want}
    late = sorted(float(g[1]) - int(g[0]) for g in got if first <= int(g[0]) <= last)
    pct = (lambda q: late[min(len(late) - 1, int(q * len(late)))] if late else None)
    return {"slots": len(want), "runs": sum(seen.values()), "duplicates": sum(n - 1 for n in seen.values() if n > 1),
            "skips": sum(1 for n in seen.values() if n == 0), "latency_p50": pct(0.5), "latency_p99": pct(0.99),
            "latency_max": late[-1] if late else None, "mean": statistics.mean(late) if late else None}


def prove(cluster, workdir, window, log=lambda *a: None, calm=0.0):
    """Apply the ticker, let it run ``calm`` seconds undisturbed, then kill leaders for
    ``window`` seconds, wait for every slot to run (within the deadline), and return
    :func:`count`'s figures of the window with the kills (and with ``calm``, the calm
    slots' figures under ``"calm"``)."""
    out = shared_dir()
    try:
        cluster.corral("apply", "-f", write_app(workdir, out))
        wait_for("the first run", lambda: lines(out), timeout=120)
        calm_first = int(lines(out)[0][0]) + EVERY
        time.sleep(calm)
        first = (int(time.time()) // EVERY + 1) * EVERY if calm else calm_first
        kills, (_, end) = kill_leaders(cluster, window, log)
        last = int(end) // EVERY * EVERY
        # A duplicate, if there were one, is in the file by the time every slot is: the runs
        # start within moments of their slot, and nothing runs a slot after its deadline.
        wait_for(f"every slot up to {last} to run", lambda: {int(g[0]) for g in lines(out)} >= set(
            range(calm_first, last + 1, EVERY)), timeout=DEADLINE)
        figures = count(out, first, last)
        figures["kills"] = kills
        if calm:
            figures["calm"] = count(out, calm_first, first - EVERY)
        return figures
    finally:
        shutil.rmtree(out, ignore_errors=True)
