"""The change stream (GET /v1/watch) against hostile and careless clients, on a real reconciler process.

- no token, a wrong one, the token under Basic: 401, nothing streamed;
- as many idle streams as the reconciler allows, held open and never read: the rest of the API still
  answers at once (eventlet.wsgi serves every connection from one pool of green threads: streams that
  never end must not use it up), one stream more is refused with a sentence, and the places come back
  when the idle clients go;
- a hostile ``kinds`` query: 400 with a sentence.
"""
import http.client
import json
import socket
import time

import pytest

from corral.auth import role_tokens
from reconciler.watch import MAX_WATCHERS
from tests.support import reconciler_process, wait_for


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with reconciler_process(tmp_path_factory.mktemp("watch"), name="r-watch",
                            settings={"watch_interval": 0.2, "watch_keepalive": 0.5}) as (port, key):
        yield port, role_tokens(key)


def open_stream(port, authorization):
    """A raw connection that asked for the change stream; ``(socket, status line, first bytes)``."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "GET /v1/watch HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: {authorization}\r\n" if authorization else "")
    s.sendall((head + "\r\n").encode())
    got = b""
    while b"\r\n\r\n" not in got:
        block = s.recv(4096)
        if not block:
            break
        got += block
    return s, got.split(b"\r\n", 1)[0].decode(), got


def timed_get(port, token, path="/v1/apps"):
    """``(status, seconds)`` of one GET over a fresh connection."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        r.read()
        return r.status, time.monotonic() - start
    finally:
        conn.close()


@pytest.mark.parametrize("header", [None, "Bearer " + "0" * 64, "Basic {read}", "{read}"],
                         ids=["no-token", "wrong-token", "basic", "bare"])
def test_a_stream_without_a_valid_token_is_refused(api, header):
    port, tokens = api
    s, status, got = open_stream(port, header and header.format(read=tokens["read"]))
    try:
        assert status.endswith("401 Unauthorized"), status
        assert b"text/event-stream" not in got
    finally:
        s.close()


def test_a_hostile_kinds_query_is_refused_with_a_sentence(api):
    port, tokens = api
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v1/watch?kinds=apps,%3Cscript%3E", headers={"Authorization": f"Bearer {tokens['read']}"})
    r = conn.getresponse()
    assert r.status == 400 and "is not one of apps, instances, nodes, events" in json.loads(r.read())["error"]
    conn.close()


def test_idle_streams_up_to_the_limit_do_not_starve_the_api_and_one_more_is_refused(api):
    port, tokens = api
    held = []
    try:
        for _ in range(MAX_WATCHERS):
            s, status, got = open_stream(port, f"Bearer {tokens['read']}")
            held.append(s)
            assert status.endswith("200 OK") and b"text/event-stream" in got, status
        status, took = timed_get(port, tokens["read"])
        assert status == 200 and took < 2.0, f"get apps took {took:.2f}s with {len(held)} idle streams"
        assert timed_get(port, tokens["read"], "/v1/nodes")[0] == 200
        extra, status, got = open_stream(port, f"Bearer {tokens['read']}")
        extra.close()
        assert status.endswith("503 Service Unavailable") and b"watches already" in got, (status, got)
    finally:
        for s in held:
            s.close()

    def admitted():   # a client that went is noticed at its next keepalive, and its place freed
        s, status, _ = open_stream(port, f"Bearer {tokens['read']}")
        s.close()
        return status.endswith("200 OK")
    wait_for("a stream to be admitted again once the idle clients left", admitted, timeout=15, interval=0.5)
