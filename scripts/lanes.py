"""The whole suite in two lanes at once: ``./run-tests`` with no arguments runs this.

Half of the suite's time is spent waiting (for heartbeats, grace periods,
leader leases, a cluster's daemons), so two pytest processes side by side
take little more than the longer one alone. The tiers split along that line:

- ``system``: ``tests/cluster`` and ``tests/e2e``, whole clusters of real processes;
- ``parts``: ``tests/unit``, ``tests/store``, ``tests/integration`` and ``tests/adversarial``.

The lanes share nothing a test could trip over: every test names its own
apps, databases, users, ports and namespaces (the suite was written for
servers shared with other runs). Lane ``system`` prints as it goes; lane
``parts`` writes to a file that is printed whole once it ends, so neither
interleaves the other's lines. The exit status is the worst of the two, and
Ctrl-C (or SIGTERM) stops both.

``CORRAL_TEST_LANES=1`` runs the suite in one process, as any arguments to
``./run-tests`` do (``./run-tests tests/unit -q``).
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

LANES = {
    "system": ["tests/cluster", "tests/e2e"],
    "parts": ["tests/unit", "tests/store", "tests/integration", "tests/adversarial"],
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
    log = tempfile.NamedTemporaryFile(prefix="corral-tests-parts-", suffix=".log", delete=False)
    began = time.monotonic()
    print(f"two lanes at once: system ({' '.join(LANES['system'])}) below; parts "
          f"({' '.join(LANES['parts'])}) to {log.name}, printed when it ends", flush=True)
    procs = {
        "system": subprocess.Popen(lane_argv(sys.executable, LANES["system"])),
        "parts": subprocess.Popen(lane_argv(sys.executable, LANES["parts"]), stdout=log, stderr=subprocess.STDOUT),
    }

    def stop(signum, _frame):
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    codes = {name: p.wait() for name, p in procs.items()}
    log.close()
    print(f"\n===== lane parts ({' '.join(LANES['parts'])}) =====", flush=True)
    with open(log.name, "rb") as f:
        sys.stdout.buffer.write(f.read())
    sys.stdout.flush()
    os.unlink(log.name)
    said = ", ".join(f"{name} {'passed' if code == 0 else f'FAILED (exit {code})'}" for name, code in codes.items())
    print(f"lanes: {said}; {time.monotonic() - began:.0f} s in all", flush=True)
    sys.exit(worst(codes.values()))


if __name__ == "__main__":
    main()
