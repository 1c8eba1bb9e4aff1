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
import re  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402

from corral.auth import api_token  # noqa: E402
from corral.wire.bus import BusClient  # noqa: E402
from corral.wire.credentials import credential_path, load_credential  # noqa: E402
from corral.wire.envelope import seal  # noqa: E402
from corral.wire.keys import new_key_file  # noqa: E402
from tests.adversarial.test_bus_encryption import Sniffer  # noqa: E402
from tests.impostor import alive, report  # noqa: E402
from tests.support import free_port, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMINGS = {"heartbeat": 0.2, "heartbeat_timeout": 1.5, "node_grace": 3.0, "loop_interval": 0.3,
           "lease_renew": 0.5, "lease_ttl": 2.0}
WAIT = 30


class Cluster:
    """``reconcilers`` reconciler daemons (``--bus-encryption required``) on one fresh store, the CLI against
    the first, and agent daemons started with the environment a joined node has: no cluster key."""

    def __init__(self, tmp_path, reconcilers=1, encryption="required"):
        self.dir = tmp_path
        self.key = new_key_file(tmp_path / "secret")
        self.settings = tmp_path / "settings.yaml"
        self.settings.write_text(yaml.safe_dump(TIMINGS))
        self.apis = [f"http://127.0.0.1:{free_port()}" for _ in range(reconcilers)]
        self.buses = [f"tcp://127.0.0.1:{free_port()}" for _ in range(reconcilers)]
        self.api, self.bus = self.apis[0], self.buses[0]
        self.token = api_token(self.key)
        self.agents = {}
        self.reconcilers = []
        self.encryption = encryption
        env = dict(os.environ, CORRAL_STORE=f"sqlite:///{tmp_path / 'corral.db'}", CORRAL_SECRET_FILE=str(tmp_path / "secret"))
        for i, (api, bus) in enumerate(zip(self.apis, self.buses)):
            with open(tmp_path / f"reconciler-{i + 1}.log", "wb") as log:
                self.reconcilers.append(subprocess.Popen(
                    [sys.executable, "-m", "corral", "reconciler", "--name", f"r{i + 1}", "--api", api[len("http://"):],
                     "--bus", bus, "--routes", f"tcp://127.0.0.1:{free_port()}", "--bus-encryption", encryption,
                     "--settings", str(self.settings)], env=env, cwd=ROOT, stdout=log, stderr=log))
        for api in self.apis:
            wait_for("the reconcilers' APIs", lambda: self._up(api), WAIT)

    @staticmethod
    def _up(api):
        with contextlib.suppress(requests.RequestException):
            return requests.get(api + "/healthz", timeout=1).ok

    def get(self, path, api=None):
        return requests.get((api or self.api) + path, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=10).json()

    def rejected(self, api=None):
        """What a reconciler's bus (the first's by default) refused so far, by reason."""
        return requests.get((api or self.api) + "/healthz", timeout=5).json()["rejected_messages"]

    def node(self, name, api=None):
        return next((n for n in self.get("/v1/nodes", api) if n["name"] == name), None)

    def cli(self, *args):
        env = dict(os.environ, CORRAL_API=self.api, CORRAL_TOKEN=self.token)
        env.pop("CORRAL_SECRET_FILE", None)
        return subprocess.run([sys.executable, "-m", "corral", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)

    def join_token(self, expires="1h"):
        done = self.cli("node", "join-token", "--expires", expires)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def agent(self, name, token=None, buses=None, cluster_key=False):
        """Start node ``name``'s agent daemon, to ``buses`` (default every reconciler's), joining with
        ``token`` when given, holding the cluster key when ``cluster_key``; returns its process."""
        data = self.dir / name
        buses = buses or self.buses
        argv = [sys.executable, "-m", "corral", "agent", "--name", name, *(a for b in buses for a in ("--reconciler", b)),
                "--data-dir", str(data / "data"), "--images-dir", str(data / "images"), "--no-app-users",
                "--metrics", f"127.0.0.1:{free_port()}", "--settings", str(self.settings),
                "--bus-encryption", self.encryption]
        env = {k: v for k, v in os.environ.items() if k != "CORRAL_SECRET_FILE"}
        if cluster_key:
            env["CORRAL_SECRET_FILE"] = str(self.dir / "secret")
        if token:
            env["CORRAL_JOIN_TOKEN"] = token   # as a unit's environment file would give it: not on argv
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log)
        log.close()
        self.agents.setdefault(name, []).append(proc)
        return proc

    def log_of(self, name):
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def ready(self, name, since=None, api=None):
        """Node ``name`` ready (and its agent started after ``since``, when given)."""
        node = self.node(name, api)
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
        for proc in self.reconcilers:
            proc.terminate()
        for proc in self.reconcilers:
            proc.wait(WAIT)


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


def agent_error(proc, cluster, name):
    """The one ``error:`` line node ``name``'s agent ended with (it must have ended non-zero)."""
    assert proc.wait(WAIT) != 0
    text = cluster.log_of(name)
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_a_join_token_used_twice_or_after_it_expired_is_refused_with_one_sentence(cluster):
    token = cluster.join_token()
    cluster.agent("node-1", token=token)
    wait_for("node-1 ready", lambda: cluster.ready("node-1"), WAIT)

    assert agent_error(cluster.agent("node-2", token=token), cluster, "node-2") == [
        f"error: the reconciler at {cluster.bus} refused the join: the join token was already used (by node node-1); "
        "ask for a new one"]

    made = requests.post(cluster.api + "/v1/node-tokens", json={"expires": 0.5},
                         headers={"Authorization": f"Bearer {cluster.token}"}, timeout=10).json()
    wait_for("the token's expiry", lambda: time.time() > made["expires_at"] + 0.1, WAIT)
    assert agent_error(cluster.agent("node-3", token=made["token"]), cluster, "node-3") == [
        f"error: the reconciler at {cluster.bus} refused the join: the join token has expired; ask for a new one"]

    assert agent_error(cluster.agent("node-4", token="cj1.0123"), cluster, "node-4") == [
        "error: the join token is not of the form cj1.<16 hex>.<32 hex>.<64 hex> (as `corral node join-token` "
        "prints it)"]
    assert [n["name"] for n in cluster.get("/v1/nodes")] == ["node-1"]
    for name in ("node-2", "node-3", "node-4"):
        assert load_credential(cluster.dir / name / "data") is None
    assert cluster.rejected().get("join") == 2
    bad = cluster.cli("node", "join-token", "--expires", "soon")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: --expires: 'soon' is not a duration (like 500ms, 30s, 5m, 1h, or whole seconds)")


class Peer:
    """A hostile peer on the bus: a BusClient signing as ``sender`` with ``key``, authenticated by ``keypair``
    (None: a fresh one, a connection of no node); keeps every message it receives."""

    def __init__(self, cluster, sender, key, server_public, keypair=None):
        self.heard = []
        self.client = BusClient([cluster.bus], key, sender, lambda endpoint, msg: self.heard.append(msg),
                                curve_server_public=server_public, curve_keypair=keypair).start()

    def send(self, type, body, attachment=None):
        wait_for("the peer's connection", lambda: self.client.send_to(self.client.endpoints[0], type, body,
                                                                      attachment=attachment), WAIT)

    def close(self):
        self.client.close()


def counted(cluster, reason, at_least):
    return wait_for(f"{at_least} message(s) refused as {reason}",
                    lambda: cluster.rejected().get(reason, 0) >= at_least and cluster.rejected(), WAIT)


@pytest.fixture
def two_nodes(cluster):
    """node-1 and node-2 joined, each with its own key, both ready."""
    for name in ("node-1", "node-2"):
        cluster.agent(name, token=cluster.join_token())
    for name in ("node-1", "node-2"):
        wait_for(f"{name} ready", lambda: cluster.ready(name), WAIT)
    return cluster


def test_a_peer_holding_node_1s_key_cannot_act_as_node_2(two_nodes):
    cluster = two_nodes
    stolen = load_credential(cluster.dir / "node-1" / "data")
    keypair = (stolen.public, stolen.secret)
    as_node_2 = Peer(cluster, "node-2", stolen.sign_key, stolen.server_public, keypair)
    as_node_1 = Peer(cluster, "node-1", stolen.sign_key, stolen.server_public, keypair)
    try:
        body = report("node-2")
        as_node_2.send("report", body)                          # register / report as node-2 (draws its assign)
        as_node_2.send("alive", alive(body))                    # keep it looking alive
        as_node_2.send("logs_chunk", {"stream": "s1", "seq": 1}, attachment=b"forged line\n")   # into its logs
        as_node_1.send("report", report("node-2"))              # its own name on the envelope, node-2's in the body
        rejected = counted(cluster, "impersonation", 4)
        assert rejected.get("signature", 0) == 0
        for _ in range(3):   # heartbeats of the real node-2 come and go meanwhile
            node_2 = wait_for("node-2's next report", lambda: cluster.ready("node-2"), WAIT)
            assert node_2["address"] == "127.0.0.1" and node_2["capacity"]["cpu"] != 64
            eventlet.sleep(TIMINGS["heartbeat"])
        assert as_node_2.heard == [], "node-2's messages reached node-1's key"
        assert all(m.body.get("node") in (None, "node-1") for m in as_node_1.heard)
    finally:
        as_node_2.close()
        as_node_1.close()
    log = (cluster.dir / "reconciler-1.log").read_text()
    # which refusal is logged depends on which of the two sockets' messages arrived first (the rest are
    # counted under the same reason without a line of their own)
    assert re.search(r"refused a message for node 'node-2' that came by "
                     r"(node node-1's key|a report signed by node node-1) \(impersonation", log)
    metrics = requests.get(cluster.api + "/metrics", headers={"Authorization": f"Bearer {cluster.token}"},
                           timeout=10).text
    assert re.search(r'^corral_reconciler_bus_rejected_messages_total\{reason="impersonation"\} [4-9]', metrics, re.M)
    assert cluster.ready("node-1") and cluster.ready("node-2")


def curve_dealer(ctx, server_public, keypair=None):
    """A raw DEALER, CURVE client of ``server_public`` with ``keypair`` (default: a fresh one)."""
    from eventlet.green import zmq
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey = keypair or zmq.curve_keypair()
    sock.curve_serverkey = server_public
    return sock


def test_a_keyless_or_replaying_peer_gets_nothing_in(cluster):
    from eventlet.green import zmq
    from tests.adversarial.test_bus_encryption import handshake_refused
    recorder = Sniffer(cluster.bus)   # what a peer on the wire captures of node-1's connection
    ctx = zmq.Context()
    socks = []
    try:
        cluster.agent("node-1", token=cluster.join_token(), buses=[recorder.endpoint])
        wait_for("node-1 ready through the recorder", lambda: cluster.ready("node-1"), WAIT)
        cred = load_credential(cluster.dir / "node-1" / "data")
        before = cluster.rejected()

        # a keyless peer: no CurveZMQ at all, so not even the handshake
        cleartext = ctx.socket(zmq.DEALER)
        monitor = cleartext.get_monitor_socket()
        socks += [monitor, cleartext]
        cleartext.connect(cluster.bus)
        cleartext.send(seal(cluster.key, "report", "spy", 0, report("spy"), time.time()))
        handshake_refused(monitor)

        # the bytes of node-1's connection, replayed by a peer on the wire: the handshake fails, the connection ends
        replay = eventlet.connect(recorder.target)
        replay.sendall(bytes(recorder.sent))
        replay.settimeout(WAIT)
        with contextlib.suppress(ConnectionResetError, EOFError):   # (eventlet's word for a closed socket)
            while replay.recv(65536):
                pass
        replay.close()

        # a peer that knows the servers' public key (every join token carries it) but holds no node's key:
        # node-1's message (as a leak of it would give) and a made-up one are refused
        anonymous = curve_dealer(ctx, cred.server_public)
        socks.append(anonymous)
        anonymous.connect(cluster.bus)
        anonymous.send(seal(cred.sign_key, "report", "node-1", 0, report("node-1"), time.time()))
        anonymous.send(seal(os.urandom(32), "report", "spy", 0, report("spy"), time.time()))
        counted(cluster, "signature", before.get("signature", 0) + 2)

        # node-1's own message sent twice on a connection of its key (stolen): the second is a replay
        own = curve_dealer(ctx, cred.server_public, (cred.public, cred.secret))
        socks.append(own)
        own.connect(cluster.bus)
        body = report("node-1", address="127.0.0.1")
        captured = seal(cred.sign_key, "alive", "node-1", 0, alive(body), time.time())
        own.send(captured)
        own.send(captured)
        counted(cluster, "replayed", before.get("replayed", 0) + 1)
        assert {n["name"] for n in cluster.get("/v1/nodes")} == {"node-1"}
        assert wait_for("node-1 still ready", lambda: cluster.ready("node-1"), WAIT)["address"] == "127.0.0.1"
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()
        recorder.close()


def test_revoke_cuts_a_live_node_off(two_nodes):
    cluster = two_nodes
    done = cluster.cli("node", "revoke", "node-1")
    assert done.returncode == 0 and done.stdout.strip() == "node/node-1 revoked: its key is refused from now on"
    counted(cluster, "revoked", 1)   # its agent's next heartbeat, on the connection it still has
    wait_for("node-1 lost", lambda: (cluster.node("node-1") or {}).get("state") == "lost", WAIT)
    assert cluster.node("node-1")["credential"] == "revoked"
    table = cluster.cli("get", "nodes").stdout.splitlines()
    assert [line.split()[:2] for line in table[1:]] == [["node-1", "lost,revoked"], ["node-2", "ready"]]
    assert cluster.ready("node-2")

    [first] = cluster.agents["node-1"]
    first.send_signal(signal.SIGTERM)
    first.wait(WAIT)
    cluster.agent("node-1")   # started again with its revoked key: the handshake itself is refused
    counted(cluster, "key refused", 1)
    assert cluster.node("node-1")["state"] == "lost"

    missing = cluster.cli("node", "revoke", "nobody")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: node 'nobody' not found"


def test_a_node_joined_through_one_reconciler_is_known_by_the_other_and_revoked_on_both(tmp_path):
    cluster = Cluster(tmp_path, reconcilers=2)
    try:
        cluster.agent("node-1", token=cluster.join_token())   # joins at the first, then speaks to both
        for api in cluster.apis:
            node = wait_for(f"node-1 ready at {api}", lambda: cluster.ready("node-1", api=api), WAIT)
            assert node["credential"] == "own key"
        assert cluster.cli("node", "revoke", "node-1").returncode == 0   # through the first
        for api in cluster.apis:   # the second within a heartbeat: its key refused there too
            counted_at = wait_for(f"node-1's messages refused at {api}",
                                  lambda: cluster.rejected(api).get("revoked", 0) >= 1 and cluster.rejected(api), WAIT)
            assert "impersonation" not in counted_at
            wait_for(f"node-1 lost at {api}", lambda: (cluster.node("node-1", api) or {}).get("state") == "lost", WAIT)
            assert cluster.node("node-1", api)["credential"] == "revoked"
    finally:
        cluster.close()


def test_a_join_whose_answer_was_lost_is_answered_again_to_its_key_and_to_no_other(tmp_path):
    """A node's join reaches r1, which spends the token, and its answer is lost on the way back: the
    node asks r2 with the same key pair and the same token and is answered as the first time (the same
    signing key). A peer with another key pair who read the token is still refused."""
    from eventlet.green import zmq
    from corral.wire.bus import JOIN_PREFIX
    from corral.wire.credentials import parse_join_token
    from corral.wire.join import _ask
    cluster = Cluster(tmp_path, reconcilers=2)
    try:
        token = cluster.join_token()
        server_public = parse_join_token(token).server_public
        keypair = zmq.curve_keypair()
        request = JOIN_PREFIX + json.dumps({"name": "node-1", "token": token}).encode()
        ctx = zmq.Context()
        try:
            first = _ask(ctx, cluster.buses[0], keypair, server_public, request, WAIT)   # answered: then "lost"
            again = _ask(ctx, cluster.buses[1], keypair, server_public, request, WAIT)
            other = _ask(ctx, cluster.buses[1], zmq.curve_keypair(), server_public, request, WAIT)
        finally:
            ctx.term()
        assert first.startswith(b"joined ") and again == first
        assert other == b"refused the join token was already used (by node node-1); ask for a new one"
    finally:
        cluster.close()
