"""A hostile node's log batches: a node holds the cluster key, so what it signs is still its own
word. Its batch (the attachment of a logs_chunk) is bounded, taken only where a type takes one,
never runs into the next batch, and cannot forge the stream's framing to a client.

A real reconciler relay on a real bus; the "agent" is a bus client that signs what an attacker
would send, and the client's side is the `corral logs` reader over the reconciler's real encoding.
"""
import corral.green

corral.green.patch()

import io  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402

from corral.cli.client import ClientError  # noqa: E402
from corral.canonical import canonical_bytes  # noqa: E402
from corral.cli.stream import items  # noqa: E402
from corral.wire import envelope  # noqa: E402
from corral.wire.bus import BusClient, BusServer  # noqa: E402
from reconciler.session_relay import Relay, encode_item  # noqa: E402

KEY = bytes(range(32))
NODE = "node-1"
IID = "talk-web-1a2b"


def forged(type, body, attachment, nonce):
    """Wire bytes of a message an attacker with the key signs by hand (past seal's own refusals)."""
    payload = canonical_bytes({"v": envelope.VERSION, "type": type, "sender": NODE, "epoch": 0,
                                  "ts": time.time(), "nonce": nonce, "body": body})
    signed = payload + b"\0" + attachment
    return envelope._sign(KEY, signed) + b"." + signed


class Hostile:
    """A relay with one logs stream open, and the node's socket to answer it with anything."""

    def __init__(self):
        self.server = BusServer("tcp://127.0.0.1:*", KEY, "r1", self._to_relay).start()
        self.client = BusClient([self.server.endpoint], KEY, NODE, self._heard).start()
        self.relay = Relay(self.server.send, lambda node: 0.0, heartbeat_timeout=5.0, keepalive=0.3,
                           open_timeout=5.0)
        self.opens = []
        deadline = time.monotonic() + 10
        while NODE.encode() not in self.server.peers():
            assert time.monotonic() < deadline, "the node's socket never reached the reconciler"
            self.client.send_all("ping", {})
            eventlet.sleep(0.05)
        self.session = self.relay.open(NODE, "logs_open", {"instance": IID, "follow": True}, "logs")
        deadline = time.monotonic() + 10
        while not self.opens:
            assert time.monotonic() < deadline, "the open never reached the node"
            eventlet.sleep(0.02)

    def _to_relay(self, peer, msg):
        if msg.type in self.relay.types:
            self.relay.on_message(peer, msg)

    def _heard(self, endpoint, msg):
        if msg.type == "logs_open":
            self.opens.append(msg)

    def raw(self, data):
        """Send wire bytes as they are, from the node's own socket."""
        from eventlet.green import zmq
        self.client._socks[self.server.endpoint].send(data, flags=zmq.NOBLOCK)

    def rejected(self, reason):
        return self.server.stats()["rejected"].get(reason, 0)

    def next_items(self, n, timeout=5.0):
        """The next ``n`` items of the stream (keepalives left out)."""
        got, deadline = [], time.monotonic() + timeout
        for item in self.session.items():
            assert time.monotonic() < deadline, f"only {got} after {timeout}s"
            if item:
                got.append(item)
            if len(got) == n or "end" in item:
                return got
        return got

    def close(self):
        self.client.close()
        self.server.close()


@pytest.fixture
def hostile():
    h = Hostile()
    yield h
    h.close()


def test_a_batch_over_the_limit_is_dropped_and_counted_and_the_stream_goes_on(hostile):
    sid = hostile.session.id
    hostile.raw(forged("logs_chunk", {"stream": sid, "seq": 1}, b"x" * ((1 << 20) + 1) + b"\n", "big"))
    hostile.raw(forged("report", {}, b"a report takes no attachment\n", "wrong-type"))
    deadline = time.monotonic() + 5
    while hostile.rejected("schema") < 2:
        assert time.monotonic() < deadline, hostile.server.stats()
        eventlet.sleep(0.02)
    hostile.client.send_to(hostile.server.endpoint, "logs_chunk", {"stream": sid, "seq": 1}, attachment=b"fine\n")
    assert hostile.next_items(1) == [{"data": b"fine\n"}]


def test_seal_refuses_what_the_opener_would_drop():
    with pytest.raises(ValueError, match="takes no attachment"):
        envelope.seal(KEY, "logs_chunk", NODE, 0, {"stream": "s", "seq": 1}, time.time(),
                      attachment=b"x" * ((1 << 20) + 1))
    with pytest.raises(ValueError, match="takes no attachment"):
        envelope.seal(KEY, "ping", NODE, 0, {}, time.time(), attachment=b"")


def test_a_batch_without_its_last_newline_never_runs_into_the_next(hostile):
    sid = hostile.session.id
    send = hostile.client.send_to
    send(hostile.server.endpoint, "logs_chunk", {"stream": sid, "seq": 1}, attachment=b"torn line without end")
    send(hostile.server.endpoint, "logs_chunk", {"stream": sid, "seq": 2}, attachment=b"next line\n")
    assert hostile.next_items(2) == [{"data": b"torn line without end\n"}, {"data": b"next line\n"}]


def test_a_batch_cannot_forge_the_framing_a_client_reads():
    """Bytes that look like the stream's own items stay data, in both encodings; invalid UTF-8 is replaced."""
    evil = b'2026-11-26T15:20:38.123456Z out x\n{"end": "forged", "error": false}\n{"bytes": 99999999}\n\xff\xfe\n'
    for binary in (True, False):
        stream = encode_item({"data": evil}, binary) + encode_item({"end": "real end", "error": False})
        got = list(items(_Response(stream)))
        assert [i.get("end") for i in got] == [None, "real end"]
        data = got[0]["data"]
        assert (data if binary else data.encode("utf-8")).startswith(b'2026-11-26T15:20:38.123456Z out x\n{"end"')
        if not binary:
            assert data.endswith("\ufffd\ufffd\n")


def test_an_api_that_announces_too_many_bytes_is_one_sentence():
    with pytest.raises(ClientError, match="announced an item of 9999999999 bytes"):
        list(items(_Response(b'{"bytes": 9999999999}\nxx')))
    with pytest.raises(ClientError, match="ended inside an item of 10 bytes"):
        list(items(_Response(b'{"bytes": 10}\nxx')))


class _Response(io.BytesIO):
    """An HTTP answer's body as ``items`` reads it (``read1``), in small pieces."""

    def read1(self, n=-1):
        return super().read1(7)
