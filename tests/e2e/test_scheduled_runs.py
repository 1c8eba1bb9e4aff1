"""Scheduled, triggered and one-off runs as a user meets them, on one `corral up` cluster
(PostgreSQL store, two reconcilers, two nodes): get runs, describe, trigger, run
(attached on pipes and on a pty, detached), logs by run id, a run on a node that
dies, and last the exactly-once proof under leader kills (tests/e2e/cronproof.py;
``CORRAL_CRON_WINDOW`` seconds, default 10)."""
import calendar
import contextlib
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from tests.e2e.cluster import FAST, UpCluster, wait_for
from tests.e2e.cronproof import prove
from tests.e2e.installed import corral_bin
from tests.pg import PostgresUnavailable, postgres_dsn
from tests.support import need, scratch_schema

WINDOW = float(os.environ.get("CORRAL_CRON_WINDOW", "10"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        try:
            base = postgres_dsn()
        except PostgresUnavailable as e:
            need("postgresql", str(e))
        store = stack.enter_context(scratch_schema(base, prefix="runs"))
        c = UpCluster(tmp_path_factory.mktemp("runs"), nodes=2, store=store, timings=dict(FAST, node_grace=5))
        yield c
        assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()


@pytest.fixture(scope="module")
def job(cluster):
    """An app whose ``nightly`` runs every 3s (exit 0, printing its slot) and whose ``flaky``
    is only triggered by hand (exit 3)."""
    src = os.path.join(cluster.workdir, "job")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "README"), "w") as f:
        f.write("a job\n")
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "job"}, "spec": {
        "source": "./job", "processes": {
            "nightly": {"command": ["sh", "-c", "echo slot $CORRAL_SLOT"], "schedule": "every 3s",
                        "history": {"succeeded": 2}},
            "flaky": {"command": ["sh", "-c", "echo trying; exit 3"], "schedule": "@yearly",
                      "concurrency": "forbid"}}}}
    path = os.path.join(cluster.workdir, "job.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    cluster.corral("apply", "-f", path, "--wait")
    return "job"


def runs(cluster, **match):
    return [r for r in cluster.json("get", "runs", "job") if all(r[k] == v for k, v in match.items())]


def test_scheduled_runs_are_listed_described_and_pruned_to_their_history(cluster, job):
    done = wait_for("two succeeded runs of nightly",
                    lambda: len(runs(cluster, process="nightly", state="succeeded")) >= 2 and
                    runs(cluster, process="nightly", state="succeeded"), timeout=30)
    assert all(r["exitCode"] == 0 and r["kind"] == "schedule" and r["slot"] for r in done)
    wait_for("history pruned to 2", lambda: len(runs(cluster, process="nightly", state="succeeded")) == 2
             and runs(cluster, process="nightly", state="succeeded")[0]["id"] != done[0]["id"], timeout=30)
    text = cluster.corral("describe", "app", "job").stdout
    assert "nightly: 'every 3s' (UTC)" in text
    assert "nightly: next 20" in text and "; last run job-nightly-" in text and "succeeded, exit 0" in text
    r = runs(cluster, process="nightly", state="succeeded")[-1]
    slot = calendar.timegm(time.strptime(r["slot"], "%Y-%m-%dT%H:%M:%SZ"))
    assert cluster.corral("logs", "job", "--run", r["id"]).stdout == f"slot {slot}\n"


def test_trigger_waits_and_passes_the_exit_code_through_and_is_audited(cluster, job):
    r = cluster.corral("trigger", "job", "flaky", check=False)
    assert r.returncode == 3 and "trying" in r.stdout and "failed" in r.stderr
    (run,) = runs(cluster, process="flaky", kind="trigger")
    assert (run["state"], run["exitCode"], run["actor"].startswith("token/up-admin (")) == ("failed", 3, True)
    events = cluster.json("get", "events", "job")
    assert any(e["reason"] == "RunRequested" and run["id"] in e["message"] for e in events)
    nope = cluster.corral("trigger", "job", "nosuch", check=False)
    assert nope.returncode == 1 and "app 'job' has no process 'nosuch'" in nope.stderr


def test_run_attached_on_pipes_and_on_a_pty_and_detached(cluster, job):
    r = cluster.corral("run", "job", "--", "sh", "-c", "read x; echo got $x; exit 7", input="hello\n", check=False)
    assert (r.returncode, r.stdout) == (7, "got hello\n")
    if shutil.which("script"):
        cmd = f"{corral_bin()} run job -- sh -c 'test -t 0 && echo a-tty; exit 4'"
        t = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=cluster.env, cwd=cluster.workdir,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert t.returncode == 4 and "a-tty" in t.stdout
    rid = cluster.corral("run", "job", "--detach", "--", "sh", "-c", "echo detached output").stdout.strip()
    done = wait_for("the detached run to end", lambda: [x for x in runs(cluster, id=rid)
                                                         if x["state"] in ("succeeded", "failed")], timeout=30)
    assert (done[0]["state"], done[0]["kind"]) == ("succeeded", "oneoff")
    assert cluster.corral("logs", "job", "--run", rid).stdout == "detached output\n"
    newest = runs(cluster, kind="attached")[-1]   # (history keeps one failed run of the process)
    assert (newest["state"], newest["exitCode"]) == ("failed", 4 if shutil.which("script") else 7)


def test_a_run_on_a_node_that_dies_is_failed_and_never_started_twice(cluster, job):
    rid = cluster.corral("run", "job", "--detach", "--", "sleep", "60").stdout.strip()
    run = wait_for("the run running", lambda: [x for x in runs(cluster, id=rid) if x["state"] == "running"],
                   timeout=30)[0]
    agent = cluster.daemons("agent")[run["node"]]
    os.kill(agent, signal.SIGSTOP)
    try:
        failed = wait_for("the run failed with its node", lambda: [x for x in runs(cluster, id=rid)
                                                                   if x["state"] == "failed"], timeout=40)[0]
        assert "its node was lost" in failed["message"]
    finally:
        os.kill(agent, signal.SIGCONT)
    wait_for("the run's instance gone", lambda: rid not in {i["id"] for i in cluster.json("get", "instances")},
             timeout=40)
    assert [x["id"] for x in runs(cluster, id=rid)] == [rid]


def test_each_slot_runs_exactly_once_while_the_leader_is_killed_at_slot_boundaries(cluster, tmp_path):
    figures = prove(cluster, tmp_path, WINDOW)
    print("cron failover:", figures)
    assert figures["kills"] >= 2
    assert (figures["duplicates"], figures["skips"]) == (0, 0), figures
    assert figures["runs"] == figures["slots"]
