"""Hostile clients against a real `corral router`: slowloris, oversized and malformed heads,
request smuggling, forged forwarding headers, a feed that is not signed. Each attack is
answered by the router itself (nothing reaches the app: its request count does not move),
and the router keeps serving everyone else."""
import json
import socket
import threading
import time

import pytest
import requests

from tests.routerkit import backend, raw, route, running_router
from tests.support import wait_for


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """One backend behind a router with a 1 s head timeout."""
    tmp = tmp_path_factory.mktemp("hostile")
    with backend("app") as port:
        with running_router(tmp, routes=[route("app.test", [port])], workers=1,
                            args=["--header-timeout", "1", "--idle-timeout", "2"]) as router:
            router.backend_port = port
            yield router


def app_count(front):
    """How many requests reached the app (its own count, which this request adds one to)."""
    return int(requests.get(f"http://127.0.0.1:{front.backend_port}/count", timeout=5).text)


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


H = b"Host: app.test\r\n"


@pytest.mark.parametrize("attack, status", [
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 50\r\n\r\nhello", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"X: y\r\n Transfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: y\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: evil@app.test\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"GET / HTTP/9.9\r\n" + H + b"\r\n", 505),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),   # TLS at a plain port
], ids=["cl-te", "te-cl", "xchunked", "te-space-colon", "te-twice", "two-lengths", "folded-te", "bare-lf",
        "two-hosts", "userinfo-host", "no-host", "long-line", "big-header", "many-headers", "http-9",
        "tls-hello"])
def test_malformed_and_smuggling_heads_get_an_answer_of_the_router_and_never_reach_the_app(front, attack, status):
    before = app_count(front)
    answer = raw(front.port, attack + b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n", wait=3)
    assert status_of(answer) == status, answer[:200]
    assert answer.count(b"\r\nServer: corral-router") == 1 and b"hello from" not in answer, \
        "the router read a second request after a bad one"
    assert b"Connection: close" in answer
    assert app_count(front) == before + 1   # only our own /count


# A header line of white space and then a control character: a header pattern that matched the
# white space twice over (before the value, and as the value) took n*n/2 steps to refuse it, 8 s of
# the worker's only thread for 30,000 spaces, with every other client waiting.
BACKTRACKING_HEAD = b"GET / HTTP/1.1\r\n" + H + b"X-Pad:" + b" " * 30000 + b"\x01\r\n\r\n"


def test_a_head_made_to_make_the_parser_backtrack_is_refused_at_once(front):
    before = app_count(front)
    for _ in range(3):   # each within the client's 5 s, where each cost the worker 8 s
        assert status_of(raw(front.port, BACKTRACKING_HEAD, wait=5)) == 400
    assert app_count(front) == before + 1


def test_a_chunked_body_with_a_smuggled_request_inside_stays_a_body(front):
    body = b"5\r\nhello\r\n0\r\n\r\n"
    answer = raw(front.port, b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 + body)
    assert status_of(answer) == 200 and b'"length": 5' in answer
    bad = raw(front.port, b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
              wait=2)
    assert status_of(bad) != 200   # a chunk size that is not hex ends the exchange


def test_slowloris_is_cut_off_while_everyone_else_is_served(front):
    before = app_count(front)
    start = time.monotonic()
    slow = []

    def loris():
        pieces = [bytes([c]) for c in b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: " + b"a" * 40]
        slow.append(raw(front.port, pieces, wait=5, pause_between=0.1))
    threads = [threading.Thread(target=loris) for _ in range(20)]
    for t in threads:
        t.start()
    for _ in range(20):   # others are served while the lorises dribble
        assert requests.get(front.url("/"), headers={"Host": "app.test"}, timeout=2).status_code == 200
    for t in threads:
        t.join()
    assert all(status_of(a) == 408 for a in slow), slow[:1]
    assert time.monotonic() - start < 4.5, "the head timeout (1 s) did not cut the slow clients off"
    assert app_count(front) == before + 20 + 1


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(front):
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        time.sleep(0.2)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        assert s.recv(65536) == b""   # closed by the router, not by our 5 s timeout
        assert 1.5 < time.monotonic() - start < 4


def test_forged_forwarding_headers_are_replaced(front):
    headers = {"Host": "app.test", "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "bank.test",
               "X-Forwarded-Proto": "https", "X-Request-Id": "forged-id", "Forwarded": "for=6.6.6.6",
               "X-Real-IP": "6.6.6.6"}
    seen = requests.get(front.url("/headers"), headers=headers, timeout=5).json()
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-host"] == "app.test" and seen["x-forwarded-proto"] == "http"
    assert seen["x-request-id"] != "forged-id" and "forwarded" not in seen and "x-real-ip" not in seen
    assert "6.6.6.6" not in json.dumps(seen)


def test_hop_by_hop_headers_and_an_h2c_upgrade_do_not_reach_the_app(front):
    seen = requests.get(front.url("/headers"), headers={
        "Host": "app.test", "Connection": "keep-alive, Upgrade, HTTP2-Settings, X-Internal", "Upgrade": "h2c",
        "HTTP2-Settings": "AAMAAABkAAQAAP__", "Keep-Alive": "timeout=999", "TE": "trailers",
        "X-Internal": "1"}, timeout=5).json()
    assert not {"keep-alive", "te", "upgrade", "http2-settings", "x-internal"} & set(seen)


def test_many_idle_connections_do_not_stop_the_router(front):
    socks = [socket.create_connection(("127.0.0.1", front.port)) for _ in range(300)]
    try:
        assert requests.get(front.url("/"), headers={"Host": "app.test"}, timeout=5).status_code == 200
    finally:
        for s in socks:
            s.close()
    wait_for("the router still answering", lambda: requests.get(
        front.url("/"), headers={"Host": "app.test"}, timeout=5).status_code == 200, 5)
