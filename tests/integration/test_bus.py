"""The bus over real TCP sockets on free ports, green (eventlet patched).

Agents send the way they do in production: a heartbeat loop that repeats its
report until it lands, since a DEALER with IMMEDIATE=1 drops what it cannot
send yet. Every wait polls a condition with a deadline; none asserts a time.
"""
import corral.green

corral.green.patch()

import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402
from eventlet.green import zmq  # noqa: E402

from corral.wire.bus import BusClient, BusServer, curve_keypair  # noqa: E402
from corral.wire.envelope import seal  # noqa: E402

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ANY_PORT = "tcp://127.0.0.1:*"

REPORT = {
    "node": {"name": "node-1", "address": "127.0.0.1", "labels": {},
             "capacity": {"cpu": 2, "memory": 1 << 30, "disk": 1 << 30}},
    "epoch_seen": 0,
    "instances": [],
}


def wait_for(condition, what, timeout=10.0):
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        eventlet.sleep(0.01)


def heartbeat_until(client, condition, what, type="ping", body=None, timeout=10.0):
    """Send ``type`` from ``client`` every 50 ms until ``condition`` holds (an agent's heartbeat, sped up)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        client.send_all(type, body if body is not None else {})
        eventlet.sleep(0.05)


class Inbox:
    """A handler that keeps what it is given."""

    def __init__(self):
        self.items = []

    def __call__(self, origin, msg):
        self.items.append((origin, msg))

    def of_type(self, type):
        return [(o, m) for o, m in self.items if m.type == type]


@pytest.fixture
def closing():
    """Close every bus object registered with it at the end of the test, even on failure."""
    objects = []
    yield lambda obj: objects.append(obj) or obj
    for obj in reversed(objects):
        obj.close()


@pytest.fixture
def server(closing):
    inbox = Inbox()
    srv = closing(BusServer(ANY_PORT, KEY, "rec-1", inbox, window=5.0).start())
    srv.inbox = inbox
    return srv


@pytest.fixture
def client(closing, server):
    inbox = Inbox()
    cli = closing(BusClient([server.endpoint], KEY, "node-1", inbox, window=5.0).start())
    cli.inbox = inbox
    return cli


@pytest.fixture
def raw_dealer(closing, server):
    """A bare green DEALER on the server, for sending frames no BusClient would."""
    ctx = zmq.Context()
    socks = []

    def make(identity):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(server.endpoint)
        socks.append(sock)
        return sock

    yield make
    for sock in socks:
        sock.close(linger=0)
    ctx.term()


def test_agent_reports_reach_the_server_handler(server, client):
    heartbeat_until(client, lambda: server.inbox.of_type("report"), "a report at the server",
                    type="report", body=REPORT)
    peer, msg = server.inbox.of_type("report")[0]
    assert peer == b"node-1"
    assert (msg.sender, msg.body, msg.epoch) == ("node-1", REPORT, 0)
    assert b"node-1" in server.peers()
    assert server.stats()["accepted"] >= 1 and server.stats()["rejected"] == {}


def test_server_send_reaches_the_client_by_identity(server, client):
    heartbeat_until(client, lambda: server.inbox.items, "the client to be connected")
    assert server.send(b"node-1", "ping", {"n": 42}, epoch=7) is True
    wait_for(lambda: client.inbox.items, "the server's message at the client")
    endpoint, msg = client.inbox.items[0]
    assert endpoint == server.endpoint
    assert (msg.type, msg.sender, msg.epoch, msg.body) == ("ping", "rec-1", 7, {"n": 42})
    assert client.stats()["accepted"] == 1


def test_send_to_an_unknown_peer_returns_false_without_blocking(server):
    with eventlet.Timeout(2):  # a guard against hanging, not a timing assertion
        assert server.send(b"nobody", "ping", {}, epoch=1) is False
    assert server.stats()["dropped"] == 1 and server.stats()["sent"] == 0


def test_client_with_no_reconciler_up_drops_instead_of_queueing(closing):
    srv = BusServer(ANY_PORT, KEY, "rec-1", Inbox())
    endpoint = srv.endpoint
    srv.close()  # a free port nobody listens on
    cli = closing(BusClient([endpoint], KEY, "node-1", Inbox()).start())
    with eventlet.Timeout(2):
        assert cli.send_all("ping", {}) == 0
    assert cli.stats()["dropped"] == 1


def test_forged_message_is_dropped_and_counted_while_valid_traffic_flows(server, client, raw_dealer):
    forger = raw_dealer(b"node-1x")
    forger.send(seal(OTHER_KEY, "ping", "node-1x", 99, {"n": 666}, now=time.time()))
    forger.send(b"plain garbage")
    forger.send_multipart([b"two", b"frames"])
    wait_for(lambda: server.stats()["rejected"].get("signature", 0) == 1
             and server.stats()["rejected"].get("malformed", 0) == 2, "the forgeries to be counted")

    heartbeat_until(client, lambda: server.inbox.items, "valid traffic after the forgeries")
    assert all(peer == b"node-1" and msg.sender == "node-1" for peer, msg in server.inbox.items)


def test_replayed_frame_is_dropped(server, raw_dealer):
    sock = raw_dealer(b"node-2")
    captured = seal(KEY, "ping", "node-2", 0, {"n": 1}, now=time.time())
    sock.send(captured)
    sock.send(captured)
    wait_for(lambda: server.stats()["rejected"].get("replayed", 0) == 1, "the replay to be counted")
    assert len(server.inbox.items) == 1 and server.stats()["accepted"] == 1


def test_an_unsigned_socket_claiming_a_nodes_name_cannot_take_its_commands(server, closing, raw_dealer):
    """Found by the cluster suite: a DEALER that merely set its ZeroMQ identity to
    a node's name (no key) took that node's routing and its commands were lost."""
    inbox = Inbox()
    node = closing(BusClient([server.endpoint], KEY, "node-1", inbox).start())
    heartbeat_until(node, lambda: b"node-1" in server.peers(), "the node to be heard")
    squatter = raw_dealer(b"node-1")
    squatter.send(b"not signed")
    wait_for(lambda: server.stats()["rejected"].get("malformed", 0) >= 1, "the squatter's junk to be counted")
    assert server.send(b"node-1", "ping", {"n": 7}, 0)
    wait_for(lambda: [m.body for _, m in inbox.items] == [{"n": 7}], "the real node to get its command")
    squatter.setsockopt(zmq.RCVTIMEO, 200)
    with pytest.raises(zmq.Again):
        squatter.recv()


def test_a_node_never_heard_from_cannot_be_sent_to(server):
    assert server.send(b"node-404", "ping", {}, 0) is False
    assert server.stats()["dropped"] == 1


def test_skewed_sender_clock_is_expired(server, closing):
    skewed = closing(BusClient([server.endpoint], KEY, "node-9", Inbox(), clock=lambda: time.time() - 60).start())
    heartbeat_until(skewed, lambda: server.stats()["rejected"].get("expired", 0) >= 1, "an expired count")
    assert server.inbox.items == []


def test_a_failing_handler_does_not_stop_the_server(closing):
    seen = []

    def handler(peer, msg):
        seen.append(msg.body["n"])
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    srv = closing(BusServer(ANY_PORT, KEY, "rec-1", handler).start())
    cli = closing(BusClient([srv.endpoint], KEY, "node-1", Inbox()).start())
    counter = iter(range(10**6))
    deadline = time.monotonic() + 10
    while len(seen) < 2:
        assert time.monotonic() < deadline, "the server stopped after a handler error"
        cli.send_all("ping", {"n": next(counter)})
        eventlet.sleep(0.05)


def test_client_reaches_a_reconciler_that_restarts_on_the_same_endpoint(closing):
    first = BusServer(ANY_PORT, KEY, "rec-1", Inbox()).start()
    endpoint = first.endpoint
    inbox = Inbox()
    cli = closing(BusClient([endpoint], KEY, "node-1", inbox).start())
    heartbeat_until(cli, lambda: first.stats()["accepted"] >= 1, "the first reconciler")
    first.close()

    second_inbox = Inbox()
    second = closing(BusServer(endpoint, KEY, "rec-1", second_inbox).start())
    heartbeat_until(cli, lambda: second_inbox.items, "the restarted reconciler")
    assert second.send(b"node-1", "ping", {"n": 2}, epoch=2) is True
    wait_for(lambda: inbox.items, "the restarted reconciler's message at the client")
    assert inbox.items[-1][1].epoch == 2


def test_restarted_agent_takes_over_its_identity(server, closing):
    old = BusClient([server.endpoint], KEY, "node-1", Inbox()).start()
    heartbeat_until(old, lambda: server.inbox.items, "the first agent")
    old.close()

    new_inbox = Inbox()
    new = closing(BusClient([server.endpoint], KEY, "node-1", new_inbox).start())
    heartbeat_until(new, lambda: server.send(b"node-1", "ping", {"n": 3}, epoch=1) and new_inbox.items,
                    "the server to reach the restarted agent")
    assert new_inbox.items[-1][1].body == {"n": 3}


def test_client_reports_to_every_reconciler(closing):
    inboxes = [Inbox(), Inbox()]
    servers = [closing(BusServer(ANY_PORT, KEY, f"rec-{i}", inboxes[i]).start()) for i in range(2)]
    client_inbox = Inbox()
    cli = closing(BusClient([s.endpoint for s in servers], KEY, "node-1", client_inbox).start())
    heartbeat_until(cli, lambda: all(i.items for i in inboxes), "a report at both reconcilers",
                    type="report", body=REPORT)
    for s in servers:
        assert s.send(b"node-1", "ping", {}, epoch=1)
    wait_for(lambda: {e for e, _ in client_inbox.items} == {s.endpoint for s in servers}, "answers from both")


def test_curve_encrypted_bus_carries_signed_messages(closing):
    public, secret = curve_keypair()
    inbox = Inbox()
    srv = closing(BusServer(ANY_PORT, KEY, "rec-1", inbox, curve_secret=secret).start())
    client_inbox = Inbox()
    cli = closing(BusClient([srv.endpoint], KEY, "node-1", client_inbox, curve_server_public=public).start())
    heartbeat_until(cli, lambda: inbox.items, "a report over CurveZMQ", type="report", body=REPORT)
    assert srv.send(b"node-1", "ping", {"n": 1}, epoch=1)
    wait_for(lambda: client_inbox.items, "the answer over CurveZMQ")


def test_close_is_idempotent_and_frees_the_endpoint():
    srv = BusServer(ANY_PORT, KEY, "rec-1", Inbox()).start()
    endpoint = srv.endpoint
    srv.close()
    srv.close()
    again = BusServer(endpoint, KEY, "rec-1", Inbox())
    again.close()


def test_binding_a_taken_endpoint_is_one_clear_error(server):
    with pytest.raises(OSError, match=f"cannot bind {server.endpoint}"):
        BusServer(server.endpoint, KEY, "rec-2", Inbox())


def test_a_message_named_for_another_server_is_refused_and_moves_no_name(server, client, raw_dealer):
    """Issue 14, finding 2: node-1's message meant for another reconciler, replayed here from another
    connection, is refused (``recipient``) and node-1's commands still go to node-1."""
    heartbeat_until(client, lambda: server.send(b"node-1", "ping", {"n": 1}, 0) and client.inbox.items,
                    "node-1 to hear from the server (and so to name it)")
    replayer = raw_dealer(b"x")
    replayer.send(seal(KEY, "ping", "node-1", 0, {"n": 2}, now=time.time(), to="rec-2"))
    wait_for(lambda: server.stats()["rejected"].get("recipient") == 1, "the replay refused as another's")
    assert server.send(b"node-1", "ping", {"n": 3}, 0)
    wait_for(lambda: client.inbox.items[-1][1].body == {"n": 3}, "node-1 to get its command")
    replayer.setsockopt(zmq.RCVTIMEO, 200)
    with pytest.raises(zmq.Again):
        replayer.recv()


def test_a_message_naming_no_server_from_another_connection_moves_a_name_only_from_a_gone_one(server, closing,
                                                                                              raw_dealer):
    """A message that names no reconciler (an agent's first, or a replay of one) does not take a node's name
    from the connection it is on while that one is there; it is pinged, which names the server; once the
    node's connection is gone it does (an agent that started again)."""
    first_inbox = Inbox()
    first = BusClient([server.endpoint], KEY, "node-1", first_inbox).start()
    heartbeat_until(first, lambda: server.send(b"node-1", "ping", {"n": 1}, 0) and first_inbox.items,
                    "the first agent heard")
    replayer = raw_dealer(b"x")
    replayer.send(seal(KEY, "ping", "node-1", 0, {"n": 2}, now=time.time()))   # names no server
    wait_for(lambda: server.stats()["accepted"] >= 3, "the unnamed message taken")
    replayer.setsockopt(zmq.RCVTIMEO, 5000)
    told = replayer.recv()   # a ping that names the server
    assert b'"sender":"rec-1"' in told and b'"type":"ping"' in told
    assert server.send(b"node-1", "ping", {"n": 4}, 0)
    wait_for(lambda: first_inbox.items[-1][1].body == {"n": 4}, "node-1's command still at node-1")
    first.close()

    again_inbox = Inbox()
    again = closing(BusClient([server.endpoint], KEY, "node-1", again_inbox).start())
    heartbeat_until(again, lambda: server.send(b"node-1", "ping", {"n": 5}, 0) and again_inbox.items,
                    "the agent started again to get node-1's commands")


def test_a_message_sealed_before_the_server_started_is_expired(closing):
    sealed = seal(KEY, "ping", "node-1", 0, {"n": 1}, now=time.time() - 1)   # within the window, before the start
    srv = closing(BusServer(ANY_PORT, KEY, "rec-1", Inbox(), window=30.0).start())
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(srv.endpoint)
        sock.send(sealed)
        wait_for(lambda: srv.stats()["rejected"].get("expired") == 1, "the message from before the start refused")
        assert srv.stats()["accepted"] == 0
    finally:
        sock.close(0)
        ctx.term()


class Joins:
    """A server's view of nodes' keys that knows none and refuses every join, counting them."""

    def __init__(self):
        self.asked = []

    def admits(self, key):
        return True

    def holder(self, key):
        return None

    def sign_key(self, name):
        return None

    def refusal(self, name):
        return None

    def join(self, name, token, public_key):
        self.asked.append(name)
        return False, "the join token is not one this cluster issued"


def test_a_flood_of_joins_reaches_the_store_ten_times_a_second_and_each_gets_its_sentence(closing):
    from corral.wire.curve import server_public, server_secret
    joins = Joins()
    srv = closing(BusServer(ANY_PORT, KEY, "rec-1", Inbox(), clock=lambda: 1000.0,   # the second never ends
                            curve_secret=server_secret(KEY, "required"), identities=joins).start())
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.curve_publickey, sock.curve_secretkey = curve_keypair()
    sock.curve_serverkey = server_public(KEY, "required")
    try:
        sock.connect(srv.endpoint)
        answers = []
        for i in range(30):
            sock.send(b'join {"name": "n%d", "token": "cj1.x"}' % i)
            answers.append(sock.recv())
        assert len(joins.asked) == 10 and srv.stats()["rejected"]["join"] == 30
        assert answers[:10] == [b"refused the join token is not one this cluster issued"] * 10
        assert set(answers[10:]) == {b"refused too many joins at once; try again in a second"}
    finally:
        sock.close(0)
        ctx.term()
