"""The whole suite in three lanes at once: ``./run-tests`` with no arguments runs this.

Most of the suite's time is spent waiting (for heartbeats, grace periods,
leader leases, a cluster's daemons), so pytest processes side by side take
little more than the longest alone, even on two cores. The tiers split along
that line, the two tiers of whole clusters each a lane of its own:

- ``cluster``: ``tests/cluster``, hosts in network namespaces;
- ``e2e``: ``tests/e2e``, clusters started with ``corral up``;
- ``parts``: ``tests/adversarial``, ``tests/integration``, ``tests/store`` and ``tests/unit``.

The lanes share nothing a test could trip over: every test names its own
apps, databases, users, ports and namespaces (the suite was written for
servers shared with other runs). The first lane prints as it goes; each other
lane writes to a file that is printed whole once every lane has ended, so no
lane interleaves another's lines. The exit status is the first failure's, and
Ctrl-C (or SIGTERM) stops every lane.

``CORRAL_TEST_LANES=1`` runs the suite in one process, as any arguments to
``./run-tests`` do (``./run-tests tests/unit -q``).
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

LANES = {   # the first prints as it goes
    "cluster": ["tests/cluster"],
    "e2e": ["tests/e2e"],
    # in the order a whole run collects them (by name): the adversarial modules green the process as
    # they are collected, before a unit test imports what must be imported green (tests/support.py)
    "parts": ["tests/adversarial", "tests/integration", "tests/store", "tests/unit"],
}


def lane_argv(python, folders):
    """The pytest command of one lane (every tier folder must be in exactly one lane)."""
    return [python, "-m", "pytest", *folders]


def check_lanes(tiers):
    """``(tiers in no lane, folders in two lanes)`` for the suite's ``tiers``; both empty when every
    tier runs exactly once."""
    laned = [f for folders in LANES.values() for f in folders]
    return sorted({f"tests/{t}" for t in tiers} - set(laned)), sorted({f for f in laned if laned.count(f) > 1})


def worst(codes):
    """The exit status of the whole run: the first lane's failure (a signal's death as 128 + its
    number, as a shell says it), else 0."""
    for code in codes:
        if code:
            return code if code > 0 else 128 - code
    return 0


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    sys.path.insert(0, root)
    from tests.conftest import TIERS
    missing, twice = check_lanes(TIERS)
    if missing or twice:
        sys.exit(f"scripts/lanes.py: tier folders in no lane: {missing}; in two lanes: {twice}")
    began = time.monotonic()
    live, *buffered = LANES
    logs = {name: tempfile.NamedTemporaryFile(prefix=f"corral-tests-{name}-", suffix=".log", delete=False)
            for name in buffered}
    print(f"{len(LANES)} lanes at once: {live} ({' '.join(LANES[live])}) below; "
          + "; ".join(f"{name} ({' '.join(LANES[name])}) to {logs[name].name}" for name in buffered)
          + ", printed when every lane has ended", flush=True)
    procs = {live: subprocess.Popen(lane_argv(sys.executable, LANES[live]))}
    for name in buffered:
        procs[name] = subprocess.Popen(lane_argv(sys.executable, LANES[name]), stdout=logs[name],
                                       stderr=subprocess.STDOUT)

    def stop(signum, _frame):
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    codes = {name: p.wait() for name, p in procs.items()}
    for name in buffered:
        logs[name].close()
        print(f"\n===== lane {name} ({' '.join(LANES[name])}) =====", flush=True)
        with open(logs[name].name, "rb") as f:
            sys.stdout.buffer.write(f.read())
        sys.stdout.flush()
        os.unlink(logs[name].name)
    said = ", ".join(f"{name} {'passed' if code == 0 else f'FAILED (exit {code})'}" for name, code in codes.items())
    print(f"lanes: {said}; {time.monotonic() - began:.0f} s in all", flush=True)
    sys.exit(worst(codes.values()))


if __name__ == "__main__":
    main()
