"""Scenario 9: corral upgraded under its apps. The agents of the previous release (0.1.0, commit 2782e51:
its wheel is built here from `git archive` of that commit) run against reconcilers of this checkout, then
are upgraded one node at a time as an operator does it (SIGTERM, as `systemctl restart corral-agent` with
`KillMode=process` sends it, and the new agent started on the same data dir) while a bounded load loop
follows the app: no request fails, and no instance is restarted by the upgrade (same ids, same pids, the
same restart counts)."""
import os
import signal
import subprocess
import sys
import time

import pytest

import corral
from tests.cluster import figures
from tests.cluster.figures import Load
from tests.cluster.fleet import Fleet, ROOT
from tests.e2e.cluster import wait_for
from tests.e2e.installed import build_wheel

PREVIOUS = "2782e51"          # the commit released as 0.1.0 (CHANGELOG.md)
PREVIOUS_VERSION = "0.1.0"


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory):
    """The environment that runs the previous release: its wheel, installed (without dependencies: this
    venv's are the same) into a folder put first on PYTHONPATH."""
    base = tmp_path_factory.mktemp("previous")
    source, dist, site = base / "source", base / "dist", base / "site"
    source.mkdir()
    archive = subprocess.run(["git", "-C", ROOT, "archive", PREVIOUS], capture_output=True)
    if archive.returncode:
        pytest.fail(f"commit {PREVIOUS} (release {PREVIOUS_VERSION}) is not in this clone: "
                    f"{archive.stderr.decode().strip()}; the upgrade scenario needs the history (no shallow clone)")
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    wheel = build_wheel(str(source), str(dist))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "--target", str(site), wheel], check=True, capture_output=True)
    # PYTHONSAFEPATH: `python -m corral` run in the checkout (as the fleet runs its daemons) must not put
    # the checkout first on the path
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONSAFEPATH="1")
    said = subprocess.run([sys.executable, "-m", "corral", "version", "--client", "-o", "json"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    assert said.returncode != 0 and "invalid choice: 'version'" in said.stderr, "not the previous release's corral"
    said = subprocess.run([sys.executable, "-c", "import corral; print(corral.__version__, corral.__file__)"],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert said[0] == PREVIOUS_VERSION and said[1].startswith(str(site)), said
    return env


def versions(fleet):
    return {name: node.get("version") for name, node in fleet.nodes().items()}


def running(fleet, app):
    """``{id: (pid, restarts, node)}`` of the app's serving instances."""
    return {i["id"]: (i["pid"], i["restarts"], i["node"]) for i in fleet.serving(app)}


def upgrade_agent(fleet, node):
    """Stop the node's agent alone (SIGTERM) and start this release's on the same data dir; wait until it
    reports, ready, with this release's version."""
    d = fleet.daemons[node]
    d.signal(signal.SIGTERM)
    d.proc.wait(30)
    d.env = dict(os.environ, **fleet.unit_env[node])   # this release: the test's own environment
    d.start()
    wait_for(f"{node} to report as {corral.__version__}",
             lambda: (fleet.nodes().get(node) or {}).get("version") == corral.__version__
             and fleet.nodes()[node]["state"] == "ready", timeout=60, interval=0.2)


def test_agents_of_the_previous_release_are_upgraded_node_by_node_under_load(datacentre, tmp_path,
                                                                              previous_release):
    fleet = Fleet(datacentre, tmp_path, agent_env=previous_release)
    try:
        assert set(versions(fleet).values()) == {PREVIOUS_VERSION}, versions(fleet)
        app = "upgraded"
        fleet.deploy(app, instances=3)
        before = running(fleet, app)
        started = time.monotonic()
        with Load(fleet, app, interval=0.05, max_requests=2000, max_seconds=120) as load:
            for node in ("n1", "n2", "n3"):
                upgrade_agent(fleet, node)
            fleet.heard_from_after(time.time() + 2 * fleet.timings["heartbeat"])
        took = time.monotonic() - started
        after = running(fleet, app)
        figures.record("9 agents 0.1.0 upgraded under load", recover=took, lost=len(before) - len(after),
                       failed=len(load.failures), requests_sent=load.sent, died=len(fleet.died()),
                       note="recover: all three agents replaced, one at a time")
        assert set(versions(fleet).values()) == {corral.__version__}
        assert load.sent > 0 and load.failures == [], f"{len(load.failures)} of {load.sent} requests failed"
        assert after == before, "the upgrade restarted or moved instances"
        assert not fleet.died()
    finally:
        fleet.down()
