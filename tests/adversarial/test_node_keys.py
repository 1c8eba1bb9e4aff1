"""Each node its own key (corral/wire/credentials.py, corral/wire/zap.py, reconciler/node_keys.py), against a
real reconciler daemon on an encrypted bus and real agent daemons that joined with join tokens:

- a node joins once with a token (`corral node join-token`, `corral agent --join`) and starts again
  without it; a token used twice, or after it expired, is refused with one sentence;
- a keyless peer, a replaying peer and a peer holding node-1's key who tries to act as node-2 (its
  report, its heartbeat, its log stream, drawing its assignment): each refused and counted, node-2
  unaffected;
- `corral node revoke` cuts a live node off: its messages refused and counted, the node unreachable
  then lost, `get nodes` saying revoked.
"""
import corral.green

corral.green.patch()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402

from corral import nodereport  # noqa: E402
from corral.auth import api_token  # noqa: E402
from corral.wire.bus import BusClient  # noqa: E402
from corral.wire.credentials import credential_path, load_credential  # noqa: E402
from corral.wire.envelope import seal  # noqa: E402
from corral.wire.keys import new_key_file  # noqa: E402
from tests.support import free_port, need_root, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMINGS = {"heartbeat": 0.2, "heartbeat_timeout": 1.5, "node_grace": 3.0, "loop_interval": 0.3,
           "lease_renew": 0.5, "lease_ttl": 2.0}
WAIT = 30


class Cluster:
    """A reconciler daemon (``--bus-encryption required``) on a fresh store, the CLI against it, and agent
    daemons started with the environment a joined node has: no cluster key."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.key = new_key_file(tmp_path / "secret")
        self.settings = tmp_path / "settings.yaml"
        self.settings.write_text(yaml.safe_dump(TIMINGS))
        self.api = f"http://127.0.0.1:{free_port()}"
        self.bus = f"tcp://127.0.0.1:{free_port()}"
        self.token = api_token(self.key)
        self.agents = {}
        env = dict(os.environ, CORRAL_STORE=f"sqlite:///{tmp_path / 'corral.db'}", CORRAL_SECRET_FILE=str(tmp_path / "secret"))
        with open(tmp_path / "reconciler.log", "wb") as log:
            self.reconciler = subprocess.Popen(
                [sys.executable, "-m", "corral", "reconciler", "--name", "r1", "--api", self.api[len("http://"):],
                 "--bus", self.bus, "--routes", f"tcp://127.0.0.1:{free_port()}", "--bus-encryption", "required",
                 "--settings", str(self.settings)], env=env, cwd=ROOT, stdout=log, stderr=log)
        wait_for("the reconciler's API", self._up, WAIT)

    def _up(self):
        with contextlib.suppress(requests.RequestException):
            return requests.get(self.api + "/healthz", timeout=1).ok

    def get(self, path):
        return requests.get(self.api + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=10).json()

    def rejected(self):
        """What the reconciler's bus refused so far, by reason."""
        return requests.get(self.api + "/healthz", timeout=5).json()["rejected_messages"]

    def node(self, name):
        return next((n for n in self.get("/v1/nodes") if n["name"] == name), None)

    def cli(self, *args):
        env = dict(os.environ, CORRAL_API=self.api, CORRAL_TOKEN=self.token)
        env.pop("CORRAL_SECRET_FILE", None)
        return subprocess.run([sys.executable, "-m", "corral", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)

    def join_token(self, expires="1h"):
        done = self.cli("node", "join-token", "--expires", expires)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def agent(self, name, token=None, bus=None):
        """Start node ``name``'s agent daemon (joining with ``token`` when given); returns its process."""
        data = self.dir / name
        argv = [sys.executable, "-m", "corral", "agent", "--name", name, "--reconciler", bus or self.bus,
                "--data-dir", str(data / "data"), "--images-dir", str(data / "images"), "--no-app-users",
                "--metrics", f"127.0.0.1:{free_port()}", "--settings", str(self.settings)]
        env = {k: v for k, v in os.environ.items() if k != "CORRAL_SECRET_FILE"}
        if token:
            env["CORRAL_JOIN_TOKEN"] = token   # as a unit's environment file would give it: not on argv
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log)
        log.close()
        self.agents.setdefault(name, []).append(proc)
        return proc

    def log_of(self, name):
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def ready(self, name, since=None):
        """Node ``name`` ready (and its agent started after ``since``, when given)."""
        node = self.node(name)
        return node if node and node["state"] == "ready" and (since is None or node["agent_started"] != since) else None

    def close(self):
        for procs in self.agents.values():
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
        for procs in self.agents.values():
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(WAIT)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        self.reconciler.terminate()
        self.reconciler.wait(WAIT)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_a_node_joins_once_with_a_token_and_starts_again_without_it(cluster):
    token = cluster.join_token()
    first = cluster.agent("node-1", token=token)
    node = wait_for("node-1 ready with its own key", lambda: cluster.ready("node-1"), WAIT)
    assert node["credential"] == "own key"
    path = credential_path(cluster.dir / "node-1" / "data")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    cred = load_credential(cluster.dir / "node-1" / "data")
    assert cred.name == "node-1" and cluster.key.hex() not in open(path).read()

    first.send_signal(signal.SIGTERM)   # an agent restart: the instances stay, the credential too
    first.wait(WAIT)
    cluster.agent("node-1")             # no token, no cluster key
    wait_for("node-1 reporting again from its new agent", lambda: cluster.ready("node-1", since=node["agent_started"]),
             WAIT)
    assert "joined" not in cluster.log_of("node-1").split("reporting to")[-1]
