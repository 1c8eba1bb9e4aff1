"""The store under eventlet, as the daemons use it: green threads in several processes at once."""
import json
import os
import subprocess
import sys

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "green_workload.py")


def test_green_threads_in_two_processes_share_the_store(backend, store, store_dsn):
    keys = [f"k{i:02d}" for i in range(40)]
    for key in keys:
        store.enqueue_build(key, "hello", {})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, WORKLOAD, backend, store_dsn, tag], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for tag in ("p1", "p2")]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["errors"] for r in reports] == [[], []]
    # every claim exclusive, every build claimed
    claimed = reports[0]["claimed"] + reports[1]["claimed"]
    assert sorted(claimed) == keys
    # every apply transaction that changed something bumped the counter exactly once
    assert store.apps_version() == reports[0]["changed"] + reports[1]["changed"]
    names = [a.name for a in store.list_apps()]
    assert names == sorted([f"p{p}-{n}" for p in (1, 2) for n in range(10)] + ["shared"])
    assert all(store.get_app(f"p1-{n}").generation == 5 for n in range(10))
