"""Set-ups that tests and benchmarks share: what a test needs of the machine (skip, or
fail under CORRAL_REQUIRE), a free port, polling with a deadline, a throwaway PostgreSQL
schema, a fresh store of either backend, ballast that fills a disk, a static HTTP file server, a tar of named members, an app whose image counts as built, and a store left one schema version
further, as the next release would leave it.

Nothing here is a fake: the helpers make real ports, real schemas and real build
records through the store's own interface.
"""
import contextlib
import io
import os
import socket
import tarfile
import threading
import time
import types
import uuid

import pytest

from corral.store import open_store
from reconciler import agent_specs
from tests.pg import PostgresUnavailable, postgres_dsn, with_search_path


# What a test may need of the machine, and what each name in CORRAL_REQUIRE stands for.
REQUIREMENTS = {
    "postgresql": "a PostgreSQL server (on 127.0.0.1:5432, CORRAL_TEST_PG, or binaries to start one)",
    "root": "running as root (app users, cgroups, mounts)",
    "netns": "network namespaces (root, iproute2, `ip netns add` working)",
    "chromium": "headless Chromium and its driver (Debian's chromium and chromium-driver) and selenium",
}


def required():
    """The requirements the run insists on: the comma-separated names of CORRAL_REQUIRE (CI sets
    ``postgresql,root,netns,chromium``). A name that is not in REQUIREMENTS is refused with ValueError, so a
    typo cannot quietly turn a requirement back into a skip."""
    names = {n.strip() for n in os.environ.get("CORRAL_REQUIRE", "").split(",") if n.strip()}
    unknown = sorted(names - set(REQUIREMENTS))
    if unknown:
        raise ValueError(f"CORRAL_REQUIRE names {', '.join(unknown)}, which this suite does not know; "
                         f"say any of {', '.join(REQUIREMENTS)}")
    return names


def need(what, reason):
    """The calling test cannot run here because ``what`` (a key of REQUIREMENTS) is missing, for
    ``reason`` (one sentence): it fails with that reason when CORRAL_REQUIRE names ``what`` (the
    run claims to prove it), and is skipped with it otherwise. Never returns. The report names
    the caller's line, not this one."""
    __tracebackhide__ = True
    if what not in REQUIREMENTS:
        raise ValueError(f"need({what!r}): not one of {', '.join(REQUIREMENTS)}")
    if what in required():
        pytest.fail(f"CORRAL_REQUIRE names {what}, so this fails instead of skipping: {reason}", pytrace=False)
    pytest.skip(reason)


def need_root(reason):
    """Returns when this process runs as root; else the test needs ``root`` (see :func:`need`) for ``reason``."""
    __tracebackhide__ = True
    if os.geteuid() != 0:
        need("root", reason)


def free_base_port(span=22):
    """A base port whose next ``span`` ports are all free now. The search starts at a place
    drawn from the pid, so that test runs side by side rarely race for the same ports."""
    start = 20000 + (os.getpid() * 97) % 20000
    for base in list(range(start, 60000, 97)) + list(range(20000, start, 97)):
        ok = True
        for port in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range for a cluster")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout, interval=0.05):
    """Poll ``predicate()`` until it returns something truthy and return that; raise
    TimeoutError naming ``what`` once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def reconciler_process(folder, name="r-test", settings=None, store=None, key_file=None):
    """A reconciler process (no agent, no builder) on ``store`` (a DSN; by default a fresh SQLite store in
    ``folder``), with the cluster key of ``key_file`` (by default a new one in ``folder``) and, when given, a
    settings mapping (:mod:`corral.settings`); yields ``(port, key)`` once its API answers, and stops it
    with SIGTERM after. Two of them on one store and key are two reconcilers of one cluster."""
    import http.client
    import subprocess
    import sys
    import yaml
    from corral.wire.keys import new_key_file, read_key
    folder = str(folder)
    key = read_key(key_file) if key_file else new_key_file(os.path.join(folder, "cluster.key"))
    port = free_port()
    argv = [sys.executable, "-m", "corral", "reconciler",
            "--api", f"127.0.0.1:{port}", "--bus", f"tcp://127.0.0.1:{free_port()}",
            "--routes", f"tcp://127.0.0.1:{free_port()}", "--secret-file", key_file or os.path.join(folder, "cluster.key"),
            "--name", name]
    env = dict(os.environ, CORRAL_STORE=store or f"sqlite:///{folder}/corral.db")
    if settings:
        with open(os.path.join(folder, "settings.yaml"), "w") as f:
            yaml.safe_dump(settings, f)
        argv += ["--settings", os.path.join(folder, "settings.yaml")]
    log_path = os.path.join(folder, "reconciler.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def healthy():
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise AssertionError("the reconciler exited:\n" + f.read()[-2000:])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()
    try:
        wait_for("the reconciler's API", healthy, timeout=30)
        yield port, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()



@contextlib.contextmanager
def scratch_schema(base_dsn, prefix="t"):
    """A new PostgreSQL schema on the server of ``base_dsn``; yields a DSN whose
    search_path is that schema, and drops the schema (and all in it) afterwards."""
    import psycopg2
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
        try:
            yield with_search_path(base_dsn, schema)
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.close()


@contextlib.contextmanager
def fresh_store_dsn(backend, folder):
    """The DSN of a new, empty store: ``backend`` "sqlite" (a file in ``folder``) or "postgresql" (a scratch
    schema on the test run's server, dropped afterwards; without one, the test needs ``postgresql``: skipped,
    or failed under CORRAL_REQUIRE)."""
    if backend == "sqlite":
        yield f"sqlite:///{os.path.join(folder, 'corral.db')}"
        return
    try:
        base = postgres_dsn()
    except PostgresUnavailable as e:
        need("postgresql", str(e))
    with scratch_schema(base) as dsn:
        yield dsn


@contextlib.contextmanager
def fresh_store(backend, folder):
    """A new, migrated, empty store on :func:`fresh_store_dsn`; closed afterwards."""
    with fresh_store_dsn(backend, folder) as dsn:
        store = open_store(dsn)
        try:
            yield store
        finally:
            store.close()


def free_bytes(path):
    """Bytes an unprivileged writer may still use on the filesystem of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave=0):
    """Write ballast into folder ``path`` until about ``leave`` bytes are free on its
    filesystem (0: to the last byte a write can take)."""
    ballast = os.path.join(path, f"ballast-{len([n for n in os.listdir(path) if n.startswith('ballast')])}")
    with open(ballast, "wb") as f:
        if leave:
            os.posix_fallocate(f.fileno(), 0, max(0, free_bytes(path) - leave))
            return
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def serve_bytes(files, hits=None):
    """An HTTP server on 127.0.0.1, in a daemon thread, answering ``GET /NAME`` with
    ``files[NAME]`` (bytes); each path asked for is appended to ``hits`` when given.
    Returns the server: its URL is ``server.url``; ``shutdown()`` and ``server_close()`` end it.

    http.server is imported here, not with this module: socketserver picks its
    selector class when first imported, and one picked before a test module
    greens the process (eventlet) blocks the one OS thread in a real poll, so
    the server's green thread never yields to the client: the run hangs. That
    case is refused in one sentence instead."""
    import http.server
    import socketserver

    import eventlet.patcher
    if eventlet.patcher.is_monkey_patched("select") and socketserver._ServerSelector.__name__ == "PollSelector":
        raise RuntimeError("socketserver was imported before eventlet greened this process, so a server thread "
                           "would block it: import it only after corral.green.patch()")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if hits is not None:
                hits.append(self.path)
            data = files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tar_bytes(members):
    """A tar from (name, kind, payload): kind 'file' (payload text), 'dir', or 'symlink' (payload target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
    return buf.getvalue()


def mark_built(store, app, spec, source_digest, image, worker="test"):
    """Record the build of app ``app`` (its ``spec`` and ``source_digest``; stored or about
    to be) as succeeded with ``image`` (an env and a code layer), as the builder would,
    unless a build of the same inputs is already known."""
    key, inputs = agent_specs.build_inputs(types.SimpleNamespace(spec=spec, source_digest=source_digest))
    if store.get_build(key) is not None:
        return
    store.enqueue_build(key, app, inputs)
    build = store.claim_build(worker, stale_after=600)
    store.finish_build(build.id, worker, state="succeeded", image=image,
                       layers=[{"kind": kind, "id": "sha256:" + c * 64, "url": "http://127.0.0.1:1/x",
                                "sha256": c * 64} for kind, c in (("env", "e"), ("code", "c"))])


def schema_one_further(store):
    """Leave ``store`` as a reconciler of the next minor release would: one more migration, additive (a
    table, a column that may be NULL), and the schema version one higher than this corral's."""
    from corral.store.schema import SCHEMA_VERSION

    def work(cur):
        cur.execute("CREATE TABLE future_things (name TEXT PRIMARY KEY)")
        cur.execute("ALTER TABLE apps ADD COLUMN future_field TEXT")
        cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    store.write_transaction(work)
