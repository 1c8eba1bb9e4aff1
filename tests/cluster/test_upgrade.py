"""Scenario 9: corral upgraded under its apps. A fleet of the previous release (0.1.0, commit 2782e51: its
wheel is built here from `git archive` of that commit) runs an app; then, while a bounded load loop follows
the app, it is upgraded to this checkout in the order docs/PRODUCTION.md gives, each daemon as `systemctl
restart` does it (SIGTERM, then the new release started with the same unit command line): the reconcilers
one at a time (an old agent then talks to new reconcilers), the builder, then the agents node by node
(`KillMode=process`: the apps keep running, and the new agent adopts them). No request fails, and no
instance is restarted by the upgrade (same ids, same pids, the same restart counts)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

import corral
from tests.cluster import figures
from tests.cluster.figures import Load
from tests.cluster.fleet import BUILDER_PORT, Fleet, ROOT
from tests.e2e.cluster import wait_for
from tests.e2e.installed import build_wheel

PREVIOUS = "2782e51"          # the commit released as 0.1.0 (CHANGELOG.md)
PREVIOUS_VERSION = "0.1.0"
NEW_FLAGS = {"--routes", "--bus-encryption"}   # flags with a value that this release's units pass and 0.1.0 does not know
NODES = ["n1", "n2"]           # two are enough: the second is upgraded while the first runs the new release


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


def release_of(fleet, name):
    """The release daemon ``name`` says it runs: an agent in its report (once ready), a reconciler and the
    builder on their /healthz (0.1.0 did not say it there: None)."""
    if name.startswith("n"):
        node = fleet.nodes().get(name) or {}
        return node.get("version") if node.get("state") == "ready" else None
    if name == "b1":
        try:
            return requests.get(f"http://{fleet.dc.operator}:{BUILDER_PORT}/healthz", timeout=1).json().get("version")
        except (requests.RequestException, ValueError):
            return None
    return (fleet.get("/healthz", name, timeout=1) or {}).get("version")


def versions(fleet):
    """``{daemon: release}`` of the reconcilers and agents."""
    return {name: release_of(fleet, name) for name in ("r1", "r2", *NODES)}


def running(fleet, app):
    """``{id: (pid, restarts, node)}`` of the app's serving instances."""
    return {i["id"]: (i["pid"], i["restarts"], i["node"]) for i in fleet.serving(app)}


def upgrade(fleet, name):
    """Stop daemon ``name`` (SIGTERM: an agent ends alone) and start this release with its unit's command
    line; wait until it says it runs this release."""
    d = fleet.daemons[name]
    d.signal(signal.SIGTERM)
    d.proc.wait(30)
    d.env = dict(os.environ, **fleet.unit_env[name])   # this release: the test's own environment
    d.argv = fleet.unit_argv[name]                     # and its unit's command line
    d.start()
    wait_for(f"{name} to run {corral.__version__}", lambda: release_of(fleet, name) == corral.__version__,
             timeout=60, interval=0.2)


def previous_unit(argv):
    """The command line the previous release's unit held: this release's, without the flags it added
    (a reconciler's route feed, --routes)."""
    out, words = [], iter(argv)
    for word in words:
        if word in NEW_FLAGS:
            next(words)
        else:
            out.append(word)
    return out


def test_a_fleet_of_the_previous_release_is_upgraded_in_order_under_load(datacentre, tmp_path, previous_release):
    # 0.1.0 speaks cleartext: the units keep the bus so until every daemon is upgraded (docs/PRODUCTION.md)
    fleet = Fleet(datacentre, tmp_path, nodes=NODES, release_env=previous_release, release_argv=previous_unit,
                  router=False, bus_encryption="off")
    try:
        assert versions(fleet) == {"n1": PREVIOUS_VERSION, "n2": PREVIOUS_VERSION, "r1": None, "r2": None}, \
            versions(fleet)
        app = "upgraded"
        fleet.deploy(app, instances=2)
        before = running(fleet, app)
        started = time.monotonic()
        with Load(fleet, app, interval=0.05, max_requests=3000, max_seconds=180) as load:
            for name in ("r1", "r2", "b1", *NODES):
                upgrade(fleet, name)
            fleet.heard_from_after(time.time() + 2 * fleet.timings["heartbeat"])
        took = time.monotonic() - started
        after = running(fleet, app)
        figures.record("9 0.1.0 fleet upgraded under load", recover=took, lost=len(before) - len(after),
                       failed=len(load.failures), requests_sent=load.sent, died=len(fleet.died()),
                       note="recover: 2 reconcilers, the builder and 2 agents replaced, one at a time")
        assert set(versions(fleet).values()) == {corral.__version__}, versions(fleet)
        assert load.sent > 0 and load.failures == [], f"{len(load.failures)} of {load.sent} requests failed"
        assert after == before, "the upgrade restarted or moved instances"
        assert not fleet.died()
        fleet.deploy(app, instances=3)   # and the upgraded fleet still acts
    finally:
        fleet.down()
