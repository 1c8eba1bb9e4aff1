"""Slow and greedy HTTP clients cannot hold corral's servers (corral/httpserve.py, which serves the
reconciler's API, the builder's and the metrics endpoints): a client that dribbles its request
head is cut at the head deadline, one address holds at most its share of connections (the next
is answered 503 at once), and meanwhile another client is served; a long answer is not cut."""
import corral.green

corral.green.patch()

import socket  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402

from corral import httpserve  # noqa: E402

HEAD_TIMEOUT = 1.0
PER_CLIENT = 4


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _slowly()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _slowly():
    for n in range(4):   # an answer that lasts twice the head deadline, as `logs -f` does far longer
        yield f"chunk {n}\n".encode()
        eventlet.sleep(HEAD_TIMEOUT / 2)


@pytest.fixture
def server():
    sock = eventlet.listen(("127.0.0.1", 0))
    thread = eventlet.spawn(httpserve.serve, sock, app, head_timeout=HEAD_TIMEOUT, per_client=PER_CLIENT)
    yield sock.getsockname()[1]
    thread.kill()
    sock.close()


def connect(port, source="127.0.0.1"):
    conn = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return conn


def answer(conn, request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
    """Everything the server says until it closes the connection."""
    conn.sendall(request)
    got = b""
    while chunk := conn.recv(65536):
        got += chunk
    return got


def dribble(conn, stop):
    """Send a request head a byte at a time, never finishing it, until ``stop`` or the server closes."""
    try:
        conn.sendall(b"GET / HTTP/1.1\r\n")
        while not stop:
            conn.sendall(b"X")
            eventlet.sleep(0.1)
    except OSError:
        pass


def test_a_dribbled_head_is_cut_at_the_deadline_and_one_address_holds_only_its_share(server):
    slow = [connect(server) for _ in range(PER_CLIENT)]
    stop = []
    threads = [eventlet.spawn(dribble, c, stop) for c in slow]
    try:
        eventlet.sleep(0)   # every dribbler has begun its head
        # the address's share is taken: the next connection is refused at once, without a pool thread
        refused = answer(connect(server))
        assert refused.startswith(b"HTTP/1.1 503 ") and b"too many connections from this address" in refused
        # another address is served meanwhile
        assert answer(connect(server, source="127.0.0.2")).startswith(b"HTTP/1.1 200 ")
        # each dribbler is cut: its connection closes with no answer though it kept sending (were it
        # not cut, the recv would end by the client's own 10 s timeout, raising)
        for conn in slow:
            assert conn.recv(65536) == b"", "a dribbled head got an answer"
        # their share is free again
        assert answer(connect(server)).startswith(b"HTTP/1.1 200 ")
    finally:
        stop.append(True)
        for t in threads:
            t.kill()
        for c in slow:
            c.close()


def test_an_answer_longer_than_the_head_deadline_is_not_cut(server):
    got = answer(connect(server), b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ") and all(f"chunk {n}".encode() in got for n in range(4)), got


def test_a_keep_alive_connection_serves_several_requests_each_head_with_its_own_deadline(server):
    conn = connect(server)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        conn.sendall(request)
        data = b""
        while not data.endswith(b"ok"):
            data += conn.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 ")
        eventlet.sleep(HEAD_TIMEOUT * 0.6)   # idle between requests, within one deadline each
    assert conn.recv(65536) == b"", "an idle keep-alive connection is closed after the head deadline"
    conn.close()
