"""The cluster suite's own tools fail loudly: a fleet's GET that is answered 401 or 500 fails the test (only no
answer, or a 503 where the store is meant to be down, is None), a fleet that had to kill what was left says so,
and a load loop that broke says so instead of passing for one that found nothing wrong."""
import os
import subprocess
import sys
import time
import types

import pytest

from tests.cluster.figures import Load
from tests.cluster.fleet import Fleet
from tests.httpstub import StubServer

ANSWERS = {"GET /healthz": (200, {"ok": True, "leader": True}),
           "GET /v1/apps": (401, {"error": "missing or wrong API token"}),
           "GET /v1/nodes": (503, {"error": "the store is unavailable: gone"}),
           "GET /v1/builds": (500, {"error": "internal error while serving GET /v1/builds"})}


class FakeDaemon:
    def __init__(self, stops=True):
        self.stops, self.stopped = stops, False

    def alive(self):
        return not self.stopped

    def stop(self, timeout=30):
        self.stopped = True
        return 0 if self.stops else None

    def tail(self, n=40):
        return "last words\n"


def bare_fleet(url="http://127.0.0.1:9", workdir="/nonexistent", daemons=None):
    """A Fleet with no datacentre: its API at ``url``, the given daemons, nothing to heal or destroy."""
    f = Fleet.__new__(Fleet)
    f.token, f.workdir = "t0ken", str(workdir)
    f.daemons = daemons or {"r1": FakeDaemon(), "r2": FakeDaemon()}
    f.api_url = lambda r: url
    f.dc = types.SimpleNamespace(hosts=[], heal=lambda h: None)
    f.pg = types.SimpleNamespace(destroy=lambda: None)
    return f


@pytest.fixture(scope="module")
def api():
    with StubServer(ANSWERS) as url:
        yield url


def test_get_gives_the_json_of_a_2xx_answer(api):
    fleet = bare_fleet(api)
    assert fleet.get("/healthz") == {"ok": True, "leader": True}
    assert fleet.leader() == "r1"


@pytest.mark.parametrize("path, status", [("/v1/apps", 401), ("/v1/builds", 500), ("/v1/nodes", 503)])
def test_get_fails_the_test_on_any_other_answer(api, path, status):
    with pytest.raises(AssertionError, match=f"GET {path} from r1 answered {status}: " + r'\{"error": '):
        bare_fleet(api).get(path)


def test_a_503_is_none_only_where_the_store_is_meant_to_be_down(api):
    assert bare_fleet(api).get("/v1/nodes", store_down_ok=True) is None
    with pytest.raises(AssertionError, match="answered 500"):
        bare_fleet(api).get("/v1/builds", store_down_ok=True)


def test_no_answer_is_none():
    assert bare_fleet().get("/v1/apps") is None   # nothing listens on port 9


def test_a_load_loop_that_broke_fails_when_stopped(api):
    load = Load(bare_fleet(api), "hello", interval=0.01, max_seconds=10)
    load.fleet.serving = lambda app: bare_fleet(api).get("/v1/apps")
    with pytest.raises(AssertionError, match=r"the load loop on hello ended after 0 requests: GET /v1/apps .* 401"):
        with load:
            deadline = time.monotonic() + 10
            while load.error is None and time.monotonic() < deadline:
                time.sleep(0.01)


def test_down_kills_and_reports_what_was_left(tmp_path):
    venv = tmp_path / "images" / "sha256-1" / "venv"
    env = dict(os.environ, CORRAL_APP="leftover", VIRTUAL_ENV=str(venv))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env=dict(env, VIRTUAL_ENV="/elsewhere/venv"))   # another cluster's: not this fleet's
    try:
        fleet = bare_fleet(workdir=tmp_path, daemons={"n1": FakeDaemon(), "b1": FakeDaemon(stops=False),
                                                      "r1": FakeDaemon(), "r2": FakeDaemon()})
        assert fleet.instance_processes() == {child.pid: "leftover"}
        with pytest.raises(AssertionError) as caught:
            fleet.down()
        assert str(caught.value) == (
            "the fleet did not stop cleanly: b1 did not stop within 20 s of SIGINT and was SIGKILLed:\nlast words\n\n"
            f"instance processes outlived their stopped agents and were SIGKILLed: {child.pid} (leftover)")
        assert child.wait(10) == -9 and other.poll() is None
    finally:
        for p in (child, other):
            p.kill()
            p.wait()


def test_a_clean_down_says_nothing(tmp_path):
    assert bare_fleet(workdir=tmp_path, daemons={"n1": FakeDaemon(), "b1": FakeDaemon(), "r1": FakeDaemon(),
                                                 "r2": FakeDaemon()}).down() == []


def test_heard_from_after_needs_a_report_of_every_agent_past_the_moment():
    nodes = [{"name": "n1", "last_seen": "2026-01-01T00:00:10Z"}, {"name": "n2", "last_seen": "2026-01-01T00:00:20Z"}]
    ten = 1767225610.0   # 2026-01-01T00:00:10Z
    with StubServer({"GET /v1/nodes": (200, nodes)}) as url:
        fleet = bare_fleet(url, daemons={"r1": FakeDaemon(), "r2": FakeDaemon(), "n1": FakeDaemon(),
                                         "n2": FakeDaemon()})
        assert fleet.heard_from_after(ten - 0.5) == {"n1": ten, "n2": ten + 10}
        assert fleet.heard_from_after(ten + 5, nodes=["n2"]) == {"n2": ten + 10}
        with pytest.raises(AssertionError, match="timed out after 0.5s waiting for r1 to hear from n1, n2 after "
                                                 "00:00:10"):
            fleet.heard_from_after(ten, reconciler="r1", timeout=0.5)
