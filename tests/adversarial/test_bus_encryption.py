"""An attacker on the bus's wire (corral/wire/curve.py).

- A sniffer: a TCP proxy between a real agent and its reconciler records every byte; an
  assignment's secret env value is not among them with ``--bus-encryption required``, and is
  with ``off`` (so the proxy does see the traffic).
- A keyless peer at a real reconciler daemon (encryption required): its messages, even a
  validly signed report (as a 0.1.0 agent sends), never reach the handler; a route feed
  subscriber in the clear receives nothing, nor does one that knows the servers' public key
  (every join token carries it) but holds no router credential: its handshake is refused;
  a router's credential (corral/wire/routercred.py) gets the feed, and with it alone.
"""
import corral.green

corral.green.patch()

import contextlib  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
from eventlet.green import zmq  # noqa: E402

from corral.auth import api_token  # noqa: E402
from corral.wire.bus import BusClient, BusSubscriber  # noqa: E402
from corral.wire.curve import as_client, server_public, server_secret  # noqa: E402
from corral.wire.envelope import seal  # noqa: E402
from corral.wire.keys import new_key_file, read_key  # noqa: E402
from corral.wire.routercred import RouterCredential  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    HTTP_SERVER, Reconciler, agent, assignment, image_server, key_file, running, wait_for)
from tests.support import free_port  # noqa: E402

SECRET = "s3cr3t-Value-7f1c9a0e"   # an app's env value: must never cross the wire in the clear
REPORT = {"node": {"name": "n1", "address": "127.0.0.1", "labels": {},
                   "capacity": {"cpu": 1, "memory": 1 << 30, "disk": 1 << 30}},
          "epoch_seen": 0, "instances": []}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Sniffer:
    """A TCP proxy on a free loopback port to ``target`` (``tcp://HOST:PORT``) that keeps every byte
    it relays, both ways, in :attr:`seen`, and what its clients sent in :attr:`sent` (what a peer on
    the wire could replay)."""

    def __init__(self, target):
        host, port = target[len("tcp://"):].rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = eventlet.listen(("127.0.0.1", 0))
        self.endpoint = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.seen = bytearray()
        self.sent = bytearray()
        self.threads = [eventlet.spawn(self._accept)]

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            upstream = eventlet.connect(self.target)
            self.threads += [eventlet.spawn(self._pipe, client, upstream, self.sent),
                             eventlet.spawn(self._pipe, upstream, client, None)]

    def _pipe(self, src, dst, keep):
        with contextlib.suppress(OSError, EOFError):   # (EOFError: eventlet's word for a closed socket)
            while chunk := src.recv(65536):
                self.seen += chunk
                if keep is not None:
                    keep += chunk
                dst.sendall(chunk)
        for sock in (src, dst):
            with contextlib.suppress(OSError, EOFError):
                sock.close()

    def close(self):
        for gt in self.threads:
            gt.kill()
        self.listener.close()


@pytest.fixture(params=["required", "off"])
def mode(request):
    return request.param


@pytest.fixture
def reconciler(key_file, mode):
    """The agent fixture's fake reconciler, a CURVE server under ``mode`` required (with the key the
    daemons derive)."""
    rec = Reconciler(read_key(key_file), curve_secret=server_secret(read_key(key_file), mode))
    yield rec
    rec.close()


def test_a_sniffer_between_agent_and_reconciler_sees_no_secret_when_encrypted(agent, reconciler, image_server,
                                                                               mode):
    sniffer = Sniffer(reconciler.endpoint)
    try:
        agent(run_args={"reconcilers": [sniffer.endpoint], "bus_encryption": mode})
        reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER, env={"DB_PASSWORD": SECRET})],
                          epoch=1)
        wait_for("the assigned instance running (the assignment went through the sniffer)",
                 lambda: running(reconciler, "hello-web-1"))
    finally:
        sniffer.close()
    assert len(sniffer.seen) > 1000, "the sniffer saw no traffic"
    found = SECRET.encode() in sniffer.seen
    assert found is (mode == "off"), f"secret {'not ' if mode == 'off' else ''}seen on the wire with encryption {mode}"
    assert (b'"assign"' in sniffer.seen) is (mode == "off")


def handshake_refused(monitor, who="the cleartext peer"):
    """Wait until the socket behind ``monitor`` (a PAIR from ``get_monitor_socket``) has been refused
    or disconnected by its peer; the event seen."""
    from zmq.utils.monitor import parse_monitor_message
    ends = {zmq.EVENT_DISCONNECTED, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            zmq.EVENT_HANDSHAKE_FAILED_AUTH}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            event = parse_monitor_message(monitor.recv_multipart(flags=zmq.NOBLOCK))["event"]
        except zmq.Again:
            eventlet.sleep(0.02)
            continue
        assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED, f"{who} completed the handshake"
        if event in ends:
            return event
    pytest.fail(f"{who} was never refused")


@pytest.fixture
def encrypted_reconciler(tmp_path):
    """A real reconciler daemon with ``--bus-encryption required``; yields (key, bus, routes, api url)."""
    secret = tmp_path / "secret"
    new_key_file(secret)
    api, bus, routes = free_port(), f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, CORRAL_STORE=f"sqlite:///{tmp_path / 'corral.db'}", CORRAL_SECRET_FILE=str(secret))
    log = open(tmp_path / "reconciler.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "corral", "reconciler", "--name", "r1", "--api",
                             f"127.0.0.1:{api}", "--bus", bus, "--routes", routes, "--bus-encryption", "required"],
                            env=env, cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{api}"

    def up():
        with contextlib.suppress(requests.RequestException):
            return requests.get(url + "/healthz", timeout=1).ok
    try:
        wait_for("the reconciler's API", up)
        yield read_key(secret), bus, routes, url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_a_keyless_peer_never_reaches_the_reconcilers_handler(encrypted_reconciler):
    key, bus, _, url = encrypted_reconciler
    ctx = zmq.Context()
    cleartext = ctx.socket(zmq.DEALER)
    keyed = as_client(ctx.socket(zmq.DEALER), key)   # a peer past the encryption: its garbage is counted
    monitor = cleartext.get_monitor_socket()
    try:
        cleartext.connect(bus)
        # even a validly signed report (what a 0.1.0 agent, cleartext, sends) and garbage
        spy = {**REPORT, "node": {**REPORT["node"], "name": "spy"}}
        cleartext.send(seal(key, "report", "spy", 0, spy, time.time()))
        cleartext.send(b"not an envelope")
        handshake_refused(monitor)
        keyed.connect(bus)
        keyed.send(b"not an envelope")

        def rejected():
            return requests.get(url + "/healthz", timeout=2).json()["rejected_messages"]
        wait_for("the keyed peer's garbage counted", lambda: rejected().get("malformed"))
        assert rejected() == {"malformed": 1}, "a cleartext message reached the handler"
        nodes = requests.get(url + "/v1/nodes", headers={"Authorization": f"Bearer {api_token(key)}"}, timeout=5)
        assert "spy" not in nodes.text
    finally:
        for sock in (monitor, cleartext, keyed):   # an open monitor would hold ctx.term() forever
            sock.close(0)
        ctx.term()


def test_only_a_routers_credential_gets_the_route_feed(encrypted_reconciler):
    key, bus, routes, _ = encrypted_reconciler
    heard = []
    # the feed publishes while its reconciler hears agents: an encrypted agent reports
    node = BusClient([bus], key, "n1", lambda endpoint, msg: None, curve_server_public=server_public(key, "required"))
    node.start()

    def heartbeat():
        while True:
            node.send_all("report", REPORT)
            eventlet.sleep(0.2)
    beat = eventlet.spawn(heartbeat)
    credential = RouterCredential.of_cluster(key)
    feed = BusSubscriber([routes], credential.feed_key, "router-test", lambda endpoint, msg: heard.append(msg),
                         curve_server_public=credential.server_public, curve_keypair=credential.client_keys()).start()
    ctx = zmq.Context()
    cleartext = ctx.socket(zmq.SUB)
    pinned = as_client(ctx.socket(zmq.SUB), key)   # the servers' public key, a key pair of its own
    socks = [cleartext, pinned]
    try:
        for sock in (cleartext, pinned):
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            socks.append(sock.get_monitor_socket())
            sock.connect(routes)
        handshake_refused(socks[2])
        assert handshake_refused(socks[3], "a subscriber without the router credential") == \
            zmq.EVENT_HANDSHAKE_FAILED_AUTH
        wait_for("the router's snapshot and a tick", lambda: len(heard) >= 2)
        for sock in (cleartext, pinned):
            with pytest.raises(zmq.Again):
                sock.recv(flags=zmq.NOBLOCK)
    finally:
        beat.kill()
        node.close()
        feed.close()
        for sock in socks[::-1]:
            sock.close(0)
        ctx.term()
