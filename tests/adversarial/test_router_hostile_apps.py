"""Hostile apps against a real `corral router`: an answer dribbled a byte at a time, a head cut
off, a body cut off, a connection that goes quiet. The router reads what is whole, answers the
client with what it can say (502, 504, a cut), and keeps serving everyone else."""
import contextlib
import socket
import threading
import time

import pytest
import requests

from tests.routerkit import backend, raw, route, running_router

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"


def hostile(conn):
    """Serve one connection: the request path says how to misbehave."""
    with conn, conn.makefile("rb") as rfile:
        request_line = rfile.readline()
        while rfile.readline() not in (b"\r\n", b""):   # the rest of the head: read, unused
            pass
        path = request_line.split(b" ")[1] if request_line.count(b" ") == 2 else b""
        if path == b"/dribble":
            for i in range(len(ANSWER)):
                conn.sendall(ANSWER[i:i + 1])
                time.sleep(0.002)
            time.sleep(0.5)
        elif path == b"/half-head":
            conn.sendall(ANSWER[:20])
        elif path == b"/half-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        elif path == b"/silent":
            time.sleep(3)
        elif path == b"/backtracking-head":   # white space the parser once matched twice over (see below)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad:" + b" " * 60000 + b"\x01\r\nContent-Length: 0\r\n\r\n")


@contextlib.contextmanager
def hostile_app():
    """A backend on a free port that misbehaves as :func:`hostile` says; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stopping = []

    def serve():
        while not stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=hostile, args=(conn,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.append(True)
        listener.close()


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """A hostile app and a well-behaved one behind one router (1 s response timeout)."""
    tmp = tmp_path_factory.mktemp("hostile-apps")
    with hostile_app() as bad, backend("good") as good:
        with running_router(tmp, routes=[route("bad.test", [bad], app="bad"), route("good.test", [good], app="good")],
                            workers=1, args=["--response-timeout", "1"]) as router:
            yield router


def fetch(front, path, host=b"bad.test"):
    return raw(front.port, b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n", wait=5)


def still_serving(front):
    r = requests.get(front.url("/hello"), headers={"Host": "good.test"}, timeout=5)
    return r.status_code == 200 and r.text == "hello from good"


def test_an_answer_dribbled_a_byte_at_a_time_reaches_the_client_whole(front):
    answer = fetch(front, b"/dribble")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nhello world")
    assert still_serving(front)


@pytest.mark.parametrize("path, status", [(b"/half-head", b"502"), (b"/silent", b"504")])
def test_a_head_cut_off_or_never_sent_is_the_routers_own_answer(front, path, status):
    answer = fetch(front, path)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert still_serving(front)


def test_an_answer_head_made_to_make_the_parser_backtrack_is_a_502_at_once(front):
    # A header line of 60,000 spaces and a control character cost the worker half a minute to
    # refuse, while a header pattern matched the white space twice over (before the value, and in it).
    for _ in range(2):
        assert fetch(front, b"/backtracking-head").startswith(b"HTTP/1.1 502")   # within fetch's 5 s
    assert still_serving(front)


def test_a_body_cut_off_is_a_cut_for_the_client_and_nothing_more(front):
    started = time.monotonic()
    answer = fetch(front, b"/half-body")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"x" * 10)
    assert time.monotonic() - started < 4   # the router closed the client rather than wait for the rest
    assert still_serving(front)


def test_many_clients_of_a_dribbling_app_do_not_stall_the_others(front):
    threads = [threading.Thread(target=fetch, args=(front, b"/dribble")) for _ in range(20)]
    for t in threads:
        t.start()
    started = time.monotonic()
    for _ in range(50):
        assert still_serving(front)
    assert time.monotonic() - started < 5
    for t in threads:
        t.join()
