"""Benchmark: the cluster chaos suite's figures, per scenario, as one table.

Runs ``tests/cluster`` (real daemons in network namespaces; root only) with
pytest, collects the row each scenario records (time to detect, time to
recover, desired instances lost, requests failed of those sent by the load
loop, daemons that died), and prints them with the run's wall time and
outcome. The scenarios assert their limits themselves; this only reports.

    sudo .venv/bin/python bench/chaos.py [--json PATH] [-k EXPR] [--runs N]

With ``--runs N`` the suite runs N times and each figure is shown as
``median (min-max)``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.cluster.figures import table  # noqa: E402

NUMERIC = ("detect_s", "recover_s", "lost", "failed", "requests", "died")


def merge(runs):
    """One row per scenario over several runs: each number as ``median (min-max)``; notes of the last run. Pure."""
    by_scenario = {}
    for rows in runs:
        for row in rows:
            by_scenario.setdefault(row["scenario"], []).append(row)
    out = []
    for scenario, rows in by_scenario.items():
        merged = dict(rows[-1])
        for key in NUMERIC:
            values = [r[key] for r in rows if r.get(key) is not None]
            if len(values) > 1 and min(values) != max(values):
                fmt = "{:.1f}" if any(isinstance(v, float) for v in values) else "{}"
                merged[key] = (fmt.format(statistics.median(values)) + " (" + fmt.format(min(values)) + "-"
                               + fmt.format(max(values)) + ")")
        out.append(merged)
    return out


def run_suite(k, figures_path):
    """Run the cluster suite once; return (exit status, seconds, rows)."""
    argv = [sys.executable, "-m", "pytest", "tests/cluster", "-q", "-rxXs", "-p", "no:cacheprovider"]
    if k:
        argv += ["-k", k]
    began = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, CORRAL_FIGURES=figures_path))
    took = time.monotonic() - began
    try:
        with open(figures_path) as f:
            rows = json.load(f)
    except (OSError, ValueError):
        rows = []
    return done.returncode, took, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the rows (every run) to this file")
    parser.add_argument("-k", help="only the scenarios pytest -k selects")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the cluster suite needs root (network namespaces, veth, bridge)", file=sys.stderr)
        return 2
    runs, summary, statuses = [], [], []
    with tempfile.TemporaryDirectory(prefix="corral-chaos-") as tmp:
        for n in range(args.runs):
            status, took, rows = run_suite(args.k, os.path.join(tmp, f"figures-{n}.json"))
            runs.append(rows)
            statuses.append(status)
            summary.append(f"run {n + 1}: exit {status}, {took:.0f} s, {len(rows)} scenarios")
    print("\n" + table(merge(runs) if args.runs > 1 else (runs[0] if runs else [])))
    print("\n".join(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    return 0 if not any(statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
