"""Real routers and real backends for the router's tests: processes on free ports.

``backend(name)`` starts tests/router_backend.py; ``router(routes, ...)`` starts
`corral router --static` on a table of those routes (or on route feeds, with the
environment :func:`credential_env` gives); both yield what a test
needs to reach them and are stopped at the end. ``raw(port, data)`` sends bytes
as a client would and returns what came back before the router closed or
went quiet.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests

from tests.support import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def backend(name):
    """A running tests/router_backend.py called ``name``; yields its port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.router_backend", str(port), name], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        proc.kill()
        proc.wait()


def route(host, ports, app="app", path="/", process="web"):
    """A route's JSON (as the feeds and ``--static`` carry it) to backends on ``ports``."""
    return {"host": host, "path": path, "app": app, "process": process,
            "backends": [{"id": f"{app}-{p}", "address": "127.0.0.1", "port": p} for p in ports]}


class Router:
    """A running `corral router`: its ``port``, ``health_port``, ``proc`` and access log path."""

    def __init__(self, proc, port, health_port, log):
        self.proc, self.port, self.health_port, self.log = proc, port, health_port, log

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def health(self):
        return requests.get(f"http://127.0.0.1:{self.health_port}/", timeout=5).json()


def credential_env(tmp_path, cluster_key):
    """The environment of a router that follows the feeds of the cluster whose key is ``cluster_key``:
    ``CORRAL_ROUTER_CREDENTIAL`` naming its credential (corral/wire/routercred.py), written in ``tmp_path``."""
    from corral.wire.routercred import ENV_VAR, RouterCredential, save_credential
    path = tmp_path / "router.credential"
    if not path.exists():
        save_credential(path, RouterCredential.of_cluster(cluster_key))
    return {**os.environ, ENV_VAR: str(path)}


def start_router(tmp_path, *, routes=None, feeds=(), workers=1, args=(), env=None):
    """Start `corral router` on a static table of ``routes`` or on the route ``feeds``; returns a
    :class:`Router` once its health answers (the caller stops it with :func:`stop`)."""
    port, health_port = free_port(), free_port()
    argv = [sys.executable, "-m", "corral", "router", "--listen", f"127.0.0.1:{port}",
            "--health", f"127.0.0.1:{health_port}", "--workers", str(workers),
            "--access-log", str(tmp_path / "access.log"), *args]
    if routes is not None:
        table = tmp_path / f"table-{port}.json"
        table.write_text(json.dumps({"routes": routes}))
        argv += ["--static", str(table)]
    for feed in feeds:
        argv += ["--reconciler", feed]
    if feeds:
        argv += ["--bus-encryption", "off"]   # the tests' own publishers speak cleartext
    log = open(tmp_path / f"router-{port}.log", "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    router = Router(proc, port, health_port, tmp_path / f"router-{port}.log")

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"the router exited: {router.log.read_text()}")
        try:
            return router.health()
        except requests.RequestException:
            return None
    wait_for("the router's health", up, 20)
    return router


def stop(router):
    """SIGTERM the router and wait for it."""
    router.proc.send_signal(signal.SIGTERM)
    try:
        router.proc.wait(10)
    except subprocess.TimeoutExpired:
        router.proc.kill()
        router.proc.wait()


@contextlib.contextmanager
def running_router(tmp_path, **kw):
    """:func:`start_router` as a context; stopped at the end."""
    router = start_router(tmp_path, **kw)
    try:
        yield router
    finally:
        stop(router)


def raw(port, data, wait=2.0, pause_between=None):
    """Send ``data`` (bytes, or a list of pieces sent ``pause_between`` seconds apart) to
    the router and return every byte it answered until it closed or stayed quiet ``wait`` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        for piece in data if isinstance(data, list) else [data]:
            try:
                s.sendall(piece)
            except OSError:
                break
            if pause_between:
                time.sleep(pause_between)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out
