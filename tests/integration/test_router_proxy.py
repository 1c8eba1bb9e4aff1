"""A real `corral router` (static table) in front of real backends: keep-alive, streaming both
ways, upgrade, retries, timeouts, own pages, the access log and SO_REUSEPORT workers."""
import contextlib
import hashlib
import json
import os
import socket

import pytest
import requests

from tests.routerkit import backend, raw, route, running_router
from tests.support import free_port, wait_for


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """Backends a and b, one that resets every connection, a port nobody listens on, and a
    router (1 s response and head timeouts) in front of them."""
    tmp = tmp_path_factory.mktemp("router")
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(backend("a"))
        b = stack.enter_context(backend("b"))
        resetting = stack.enter_context(backend("resetting"))
        dead = free_port()
        routes = [route("hello.test", [a, b], app="hello"), route("one.test", [a], app="one"),
                  route("one.test", [b], app="docs", path="/docs"),
                  route("dead.test", [dead, a], app="dead"), route("alldead.test", [dead], app="alldead"),
                  route("flaky.test", [resetting, a], app="flaky"), route("empty.test", [], app="empty"),
                  route("*.wild.test", [b], app="wild")]
        router = stack.enter_context(running_router(tmp, routes=routes, workers=2, args=[
            "--response-timeout", "1", "--header-timeout", "1", "--connect-timeout", "1"]))
        router.a, router.b = a, b
        yield router


def get(farm, host, path="/", **kw):
    return requests.get(farm.url(path), headers={"Host": host, **kw.pop("headers", {})}, timeout=10, **kw)


@pytest.mark.parametrize("host, path, want", [
    ("one.test", "/", "hello from a"),
    ("ONE.Test:8080", "/", "hello from a"),          # case and port in Host
    ("one.test.", "/x", "hello from a"),             # a trailing dot
    ("one.test", "/docs/page", "hello from b"),      # the longer prefix, another app
    ("x.wild.test", "/", "hello from b"),
    ("deep.x.wild.test", "/", "hello from b"),
])
def test_requests_reach_the_app_that_claims_host_and_path(farm, host, path, want):
    r = get(farm, host, path)
    assert (r.status_code, r.text) == (200, want)
    assert r.headers["X-Request-Id"]


def test_unknown_host_gets_the_routers_own_404_and_no_ready_instance_a_503_with_retry_after(farm):
    r = get(farm, "nobody.test")
    assert r.status_code == 404 and "no app is served at nobody.test/" in r.text
    assert r.headers["Server"] == "corral-router"
    r = get(farm, "empty.test")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "app empty has no ready instance" in r.text


def test_keep_alive_carries_pipelined_requests_on_one_connection(farm):
    one = b"GET /hello HTTP/1.1\r\nHost: one.test\r\n\r\n"
    out = raw(farm.port, one * 3 + b"GET /hello HTTP/1.1\r\nHost: one.test\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 4 and out.count(b"hello from a") == 4
    with requests.Session() as s:
        for _ in range(20):
            assert s.get(farm.url("/"), headers={"Host": "hello.test"}, timeout=5).status_code == 200


def test_chunked_and_until_close_answers_reach_the_client_whole(farm):
    r = get(farm, "one.test", "/chunked?n=5&size=1000")
    assert r.text == "".join(chr(97 + i) * 1000 for i in range(5))
    out = raw(farm.port, b"GET /until-close HTTP/1.1\r\nHost: one.test\r\n\r\n", wait=0.5)
    assert b"Transfer-Encoding: chunked" in out and b"until close from a" in out and out.endswith(b"0\r\n\r\n")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_large_bodies_stream_both_ways_without_the_router_holding_them(farm):
    before = {p: rss_kib(p) for p in worker_pids(farm)}
    piece = os.urandom(65536)
    digest = hashlib.sha256()

    def upload():
        for _ in range(48 * 16):    # 48 MiB, chunked
            digest.update(piece)
            yield piece
    r = requests.post(farm.url("/echo"), data=upload(), headers={"Host": "one.test"}, timeout=60)
    assert r.json()["length"] == 48 * 1024 * 1024 and r.json()["sha256"] == digest.hexdigest()
    r = requests.get(farm.url("/big?mb=48"), headers={"Host": "one.test"}, stream=True, timeout=60)
    assert sum(len(c) for c in r.iter_content(65536)) == 48 * 1024 * 1024
    grown = max(rss_kib(p) - before[p] for p in before)
    assert grown < 16 * 1024, f"a router worker grew by {grown} KiB while 96 MiB passed through"


def worker_pids(farm):
    """The pids of the router's workers (its children)."""
    with open(f"/proc/{farm.proc.pid}/task/{farm.proc.pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_an_upgrade_passes_through_both_ways(farm):
    with socket.create_connection(("127.0.0.1", farm.port), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: one.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101") and b"Upgrade: echo" in head
        for message in (b"ping", b"x" * 100000):
            s.sendall(message)
            got = b""
            while len(got) < len(message):
                got += s.recv(65536)
            assert got == message


def test_a_connect_failure_or_a_reset_is_retried_on_another_instance(farm):
    for _ in range(12):
        assert get(farm, "dead.test").text == "hello from a"
        assert get(farm, "flaky.test").text == "hello from a"    # GET is idempotent: sent again


@contextlib.contextmanager
def blackhole():
    """A port whose connects hang (a listener that accepts nothing, its queue full: the kernel
    drops further SYNs), as an instance on a node that is gone does; yields the port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.create_connection(("127.0.0.1", port), timeout=2)]   # fills a queue of 0
        try:
            yield port
        finally:
            for s in queued:
                s.close()


def test_an_instance_that_fails_a_connection_rests_while_others_serve(tmp_path):
    """A refused connect and a connect that times out (a node gone, not yet declared lost) each
    cost one failed connection, not one per request: the instance rests (gets no request while
    another is ready), the health says so, and every GET is answered by the other one."""
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(backend("a"))
        hole = stack.enter_context(blackhole())
        refusing = free_port()
        router = stack.enter_context(running_router(tmp_path, workers=1, routes=[
            route("refusing.test", [refusing, a], app="refusing"), route("hole.test", [hole, a], app="hole")],
            args=["--connect-timeout", "0.5"]))
        for host in ("refusing.test", "hole.test"):
            answers = [requests.get(router.url(), headers={"Host": host}, timeout=10).text for _ in range(20)]
            assert answers == ["hello from a"] * 20
        health = router.health()
        assert health["counters"]["refusing.test /"]["connections_failed"] == 1
        assert health["counters"]["hole.test /"]["connections_failed"] == 1
        assert health["resting"] == sorted([f"refusing-{refusing}", f"hole-{hole}"])
        log = router.log.read_text()
        assert f"instance hole-{hole} at 127.0.0.1:{hole} did not take a connection (timed out): it gets no " \
               "request for 5 s unless no other is left" in log


def test_failures_say_which_they_were(farm):
    r = get(farm, "alldead.test")
    assert r.status_code == 502 and "refused the connection" in r.text
    r = get(farm, "one.test", "/slow?s=3")
    assert r.status_code == 504 and "did not answer within 1 s" in r.text
    r = requests.post(farm.url("/echo"), data=b"x", headers={"Host": "flaky.test"}, timeout=10)
    assert r.status_code in (200, 502)   # a POST is never sent twice: 502 when the resetting one was picked
    if r.status_code == 502:
        assert "closed the connection before it answered" in r.text


def test_the_access_log_has_a_line_per_request(farm, tmp_path):
    get(farm, "one.test", "/logged-path")
    log = farm.log.parent / "access.log"

    def logged():
        return [line for line in log.read_text().splitlines() if "/logged-path" in line]
    line = wait_for("the access log line", logged, 5)[0]
    assert '"GET /logged-path HTTP/1.1" 200' in line and "host=one.test" in line and "backend=one-" in line


def test_a_stopped_router_leaves_every_request_in_its_access_log(tmp_path):
    from tests.routerkit import start_router, stop
    with backend("a") as port:
        router = start_router(tmp_path, routes=[route("a.test", [port])], workers=1)
        try:
            for i in range(30):   # lines the router keeps to write in one batch, a moment later
                assert get(router, "a.test", f"/batch-{i}").status_code == 200
        finally:
            stop(router)
    logged = [line for line in (tmp_path / "access.log").read_text().splitlines() if "/batch-" in line]
    assert len(logged) == 30 and {line.split('"')[1] for line in logged} == {f"GET /batch-{i} HTTP/1.1"
                                                                              for i in range(30)}
    assert all(line.startswith("127.0.0.1 - - [") and '" 200 ' in line and "host=a.test" in line for line in logged)


def test_workers_share_the_port(farm):
    pids = set()
    wait_for("both workers to answer", lambda: pids.add(farm.health()["pid"]) or len(pids) == 2, 10, 0.01)
    assert len(worker_pids(farm)) == 2
    counters = json.dumps(farm.health()["counters"])
    assert "requests" in counters


def test_workers_end_with_a_sigterm_and_with_a_killed_parent(tmp_path):
    from tests.routerkit import start_router
    for sig in ("TERM", "KILL"):
        router = start_router(tmp_path, routes=[], workers=2)
        pids = wait_for("two workers", lambda: len(worker_pids(router)) == 2 and worker_pids(router), 10)
        router.proc.send_signal(getattr(__import__("signal"), f"SIG{sig}"))
        router.proc.wait(10)
        wait_for(f"the workers to end after SIG{sig} to their parent",
                 lambda: not any(os.path.exists(f"/proc/{p}") and "zombie" not in open(f"/proc/{p}/status").read()
                                 for p in pids), 5)


def test_a_stop_asked_while_the_workers_start_still_stops_them_all(tmp_path):
    """Seen: a worker SIGTERMed before it had set its own handler ran the parent's (inherited), which
    only passed the signal on, and the router never ended."""
    import subprocess
    import sys
    from tests.routerkit import ROOT
    table = tmp_path / "table.json"
    table.write_text('{"routes": []}')
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "corral", "router", "--static", str(table), "--workers", "4",
                                 "--listen", f"127.0.0.1:{free_port()}", "--health", f"127.0.0.1:{free_port()}"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids = wait_for("the workers forked", lambda: os.path.exists(f"/proc/{proc.pid}/task/{proc.pid}/children")
                        and len(open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()) == 4
                        and open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split(), 20, 0.001)
        proc.terminate()
        assert proc.wait(10) == 0
        assert not any(os.path.exists(f"/proc/{p}") and "zombie" not in open(f"/proc/{p}/status").read()
                       for p in pids)
