"""Layer archives packed after the build is recorded: a fetch that comes first waits for the pack
and verifies, and a builder killed mid-pack leaves nothing that is served (packed again on demand)."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from builder import archives
from builder.layers import LayerLock, ensure_archive
from corral import image_layout
from corral.store import open_store
from nodeagent.pull import ensure_layer
from tests.layerkit import signed

LAYER = "sha256:" + "ab" * 32

SERVER = """
import corral.green
corral.green.patch()
import sys, eventlet, eventlet.wsgi
from builder.web import make_app
from corral.layer_keyring import LayerKeyRing
from corral.store import open_store
sock = eventlet.listen(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
keys = LayerKeyRing(open_store(sys.argv[3]))
eventlet.wsgi.server(sock, make_app(images_dir=sys.argv[1], cache_dir=sys.argv[2], keys=keys), log_output=False)
"""

PACKER = """
import sys
from builder.layers import ensure_archive
ensure_archive(images_dir=sys.argv[1], cache_dir=sys.argv[2], kind="env", layer_id=sys.argv[3])
"""


def finished_unpacked_layer(images_dir, files=200, size=256 * 1024):
    """An env layer as a build leaves it: folder and marker in place, no archive yet."""
    folder = image_layout.layer_dir(images_dir, "env", LAYER)
    os.makedirs(os.path.join(folder, "lib"))
    for i in range(files):
        with open(os.path.join(folder, "lib", f"m{i:04d}.py"), "wb") as f:
            f.write(hashlib.sha256(str(i).encode()).digest() * (size // 32))
    os.symlink("lib/m0000.py", os.path.join(folder, "first"))
    image_layout.write_layer_marker(images_dir, "env", LAYER, {"id": LAYER, "kind": "env", "artifact_sha256": None,
                                                         "size": None})
    return folder


def expected_archive(folder, tmp_path):
    """``(sha256, size)`` of the folder packed elsewhere (tar is deterministic for one folder)."""
    return archives.pack_layer(folder, str(tmp_path / "elsewhere.tar"))


@pytest.fixture
def server(tmp_path):
    images_dir, cache_dir = str(tmp_path / "images"), str(tmp_path / "cache")
    dsn = "sqlite:///" + str(tmp_path / "corral.db")
    store = open_store(dsn)   # the layer keys: the test signs as the leader does, the server checks
    proc = subprocess.Popen([sys.executable, "-c", SERVER, images_dir, cache_dir, dsn], stdout=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        yield images_dir, cache_dir, f"http://127.0.0.1:{port}", store
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        store.close()


def test_a_fetch_before_the_pack_is_done_waits_for_it_and_verifies(server, tmp_path):
    images_dir, cache_dir, base, store = server
    folder = finished_unpacked_layer(images_dir)
    sha, size = expected_archive(folder, tmp_path)
    node = str(tmp_path / "node")
    layer = {"kind": "env", "id": LAYER, "url": signed(store, f"{base}/layers/env/{LAYER[7:]}.tar"),
             "sha256": sha, "size": size}
    fetched, failed = [], []

    def fetch():
        try:
            fetched.append(ensure_layer(node, layer))
        except Exception as e:  # noqa: BLE001 - asserted below
            failed.append(e)

    with LayerLock(images_dir, "env", LAYER, lambda: False, suffix=".pack.lock"):   # a pack in progress
        fetching = threading.Thread(target=fetch, daemon=True)
        fetching.start()
        fetching.join(1.0)
        assert fetching.is_alive() and not fetched and not failed, "the fetch waits for the pack"
        assert not os.path.exists(archives.archive_path(cache_dir, "env", LAYER[7:]))
    fetching.join(60)

    assert not failed, failed
    assert fetched == [image_layout.layer_dir(node, "env", LAYER)]
    assert sorted(os.listdir(os.path.join(fetched[0], "lib"))) == sorted(os.listdir(os.path.join(folder, "lib")))
    marker = image_layout.read_layer_marker(images_dir, "env", LAYER)
    assert (marker["artifact_sha256"], marker["size"]) == (sha, size)


def test_a_builder_killed_mid_pack_leaves_no_archive_that_is_served(tmp_path):
    images_dir, cache_dir = str(tmp_path / "images"), str(tmp_path / "cache")
    folder = finished_unpacked_layer(images_dir)
    out = os.path.join(cache_dir, "artifacts")
    packer = subprocess.Popen([sys.executable, "-c", PACKER, images_dir, cache_dir, LAYER])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and packer.poll() is None:
            partial = [n for n in os.listdir(out) if n.startswith(".pack-")] if os.path.isdir(out) else []
            if partial and os.path.getsize(os.path.join(out, partial[0])) > 0:
                packer.send_signal(signal.SIGKILL)
                break
        packer.wait()
        if packer.returncode != -signal.SIGKILL:
            pytest.fail(f"the packer was not killed mid-pack (exit status {packer.returncode})")
    finally:
        if packer.poll() is None:
            packer.kill()
            packer.wait()

    archive = archives.archive_path(cache_dir, "env", LAYER[7:])
    assert not os.path.exists(archive), "a half archive never has the name that is served"
    assert image_layout.read_layer_marker(images_dir, "env", LAYER)["artifact_sha256"] is None

    left = [n for n in os.listdir(out) if n.startswith(".pack-")]
    assert archives.remove_stale_temporaries(out) == left and not os.listdir(out)

    sha, size = ensure_archive(images_dir=images_dir, cache_dir=cache_dir, kind="env", layer_id=LAYER)
    assert (sha, size) == expected_archive(folder, tmp_path)
    with open(archive, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha


def test_a_fetch_of_a_layer_killed_mid_pack_packs_it_again(server, tmp_path):
    images_dir, cache_dir, base, store = server
    folder = finished_unpacked_layer(images_dir, files=20)
    os.makedirs(os.path.join(cache_dir, "artifacts"))
    with open(os.path.join(cache_dir, "artifacts", ".pack-1-dead.tmp"), "wb") as f:
        f.write(b"half an archive")
    sha, size = expected_archive(folder, tmp_path)

    got = requests.get(signed(store, f"{base}/layers/env/{LAYER[7:]}.tar"), timeout=60)

    assert (got.status_code, got.headers["X-Corral-Sha256"], len(got.content)) == (200, sha, size)
    assert hashlib.sha256(got.content).hexdigest() == sha


def test_a_layer_packed_again_to_other_bytes_is_not_served(tmp_path):
    images_dir, cache_dir = str(tmp_path / "images"), str(tmp_path / "cache")
    finished_unpacked_layer(images_dir, files=3)
    marker = image_layout.read_layer_marker(images_dir, "env", LAYER)
    image_layout.write_layer_marker(images_dir, "env", LAYER, dict(marker, artifact_sha256="cd" * 32, size=10))

    with pytest.raises(OSError, match="packed again has sha256"):
        ensure_archive(images_dir=images_dir, cache_dir=cache_dir, kind="env", layer_id=LAYER)
    assert not os.path.exists(archives.archive_path(cache_dir, "env", LAYER[7:]))


def test_layers_are_given_only_to_a_succeeded_build(tmp_path):
    from corral.store import Conflict, open_store
    store = open_store(f"sqlite:///{tmp_path}/corral.db")
    try:
        job = store.enqueue_build("k1", "hello", {"source_digest": "sha256:" + "0" * 64})
        layers = [{"kind": "env", "id": LAYER, "sha256": "cd" * 32, "size": 10, "url": "http://b/x.tar"}]
        with pytest.raises(Conflict, match="has not succeeded"):
            store.set_build_layers(job.id, layers)
        store.claim_build("b1", stale_after=60)
        store.finish_build(job.id, "b1", state="succeeded", image="sha256:" + "1" * 64)
        assert store.get_build("k1").layers is None
        store.set_build_layers(job.id, layers)
        assert store.get_build("k1").layers == layers
    finally:
        store.close()
