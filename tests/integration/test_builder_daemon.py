"""The builder daemon as a real process: it takes queued work by itself, serves
the image over HTTP, and stops cleanly on SIGTERM."""
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from corral.source import pack_source
from corral.store import open_store
from tests.layerkit import signed

DAEMON = """
import corral.green
corral.green.patch()
import sys
from builder.daemon import run
from corral.settings import Timings
run(store_dsn=sys.argv[1], listen=sys.argv[2], cache_dir=sys.argv[3], images_dir=sys.argv[4],
    name="b1", timings=Timings(build_poll=0.1), stale_after=5)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what):
    """Poll ``condition()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def healthy(base):
    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def daemon(tmp_path):
    dsn = f"sqlite:///{tmp_path}/corral.db"
    store = open_store(dsn)
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-c", DAEMON, dsn, listen, str(tmp_path / "cache"),
                             str(tmp_path / "images")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://{listen}"
    try:
        wait_for(lambda: healthy(base) or proc.poll() is not None, 30, "the builder to answer /healthz")
        assert proc.poll() is None, proc.stdout.read().decode()
        yield store, base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        store.close()


def test_daemon_builds_a_queued_job_and_serves_its_layers(daemon, tmp_path):
    store, base, proc = daemon
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('hello')\n")
    digest, data = pack_source(str(src))
    store.put_source(digest, data)

    store.enqueue_build("k1", "hello", {"source_digest": digest, "requirements": ["six"], "python": None})
    rec = wait_for(lambda: (lambda r: r if r.state == "failed" or r.layers else None)(store.get_build("k1")),
                   300, "the build to finish and its archives to be packed")

    assert (rec.state, rec.worker, rec.error) == ("succeeded", "b1", None)
    assert [layer["kind"] for layer in rec.layers] == ["env", "code"]
    for layer in rec.layers:
        assert layer["url"] == f"{base}/layers/{layer['kind']}/{layer['id'][7:]}.tar"
        assert requests.get(layer["url"], timeout=30).status_code == 401   # as recorded: no credential
        url = signed(store, layer["url"])
        got = requests.get(url, timeout=30)
        assert got.status_code == 200
        assert int(got.headers["Content-Length"]) == len(got.content) == layer["size"]
        assert hashlib.sha256(got.content).hexdigest() == layer["sha256"] == got.headers["X-Corral-Sha256"]
        head = requests.head(url, timeout=30)
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, str(len(got.content)), b"")
    assert requests.get(signed(store, f"{base}/layers/env/{'0' * 64}.tar"), timeout=5).status_code == 404
    assert [(b.name, b.url) for b in store.list_builders()] == [("b1", base)]   # it says where it serves

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stdout.read().decode()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)


def test_sigterm_when_idle_stops_the_daemon_cleanly(daemon):
    store, base, proc = daemon
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stdout.read().decode()


def test_sigterm_mid_build_abandons_it_cleanly(daemon, tmp_path):
    store, base, proc = daemon
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('hello')\n")
    digest, data = pack_source(str(src))
    store.put_source(digest, data)
    # An index that accepts pip's connection and never answers: the install hangs until stopped.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(120)
        wheel = f"http://127.0.0.1:{silent.getsockname()[1]}/slowpkg-1.0-py3-none-any.whl"
        store.enqueue_build("k1", "hello", {"source_digest": digest, "requirements": [f"slowpkg @ {wheel}"],
                                            "python": None})
        conn, _ = silent.accept()  # pip is installing now
        with conn:
            assert store.get_build("k1").state == "building"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stdout.read().decode()

    rec = store.get_build("k1")
    assert (rec.state, rec.worker) == ("building", "b1")  # left for another builder once stale
    images_dir = tmp_path / "images"
    left = sorted(os.path.relpath(os.path.join(d, n), images_dir)
                  for d, dirs, files in os.walk(images_dir) for n in dirs + files if not n.endswith(".lock"))
    assert left in ([], ["code"], ["code", "env"]), left  # no half-made layer, image or staging folder
