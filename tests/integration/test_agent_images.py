"""Fetching images: download over real HTTP, verify, unpack safely, rename into place."""
import corral.green

corral.green.patch()

import hashlib  # noqa: E402
import http.server  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import threading  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402

from corral import images as layout  # noqa: E402
from nodeagent.images import ImageCache, ImageError, ensure_image  # noqa: E402

IMAGE = "sha256:" + "2" * 64


def archive(members):
    """A tar.gz from (name, kind, payload): kind 'file' (payload text), 'dir', or 'symlink' (payload target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
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


GOOD = archive([("app", "dir", None), ("app/main.py", "file", "print('hi')\n"),
                ("venv", "dir", None), ("venv/bin", "dir", None),
                ("venv/bin/python", "symlink", sys.executable)])


@pytest.fixture
def serve():
    """serve(data) -> (url, hits): an HTTP server that answers every GET with ``data``."""
    servers, hits = [], []

    def start(data):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/image.tar.gz", hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_an_image_is_fetched_verified_and_marked(tmp_path, serve):
    url, _ = serve(GOOD)
    path = ensure_image(str(tmp_path), IMAGE, url, sha(GOOD))
    assert path == layout.image_dir(str(tmp_path), IMAGE)
    assert open(os.path.join(path, "app", "main.py")).read() == "print('hi')\n"
    assert os.readlink(os.path.join(path, "venv", "bin", "python")) == sys.executable
    assert layout.read_marker(str(tmp_path), IMAGE)["sha256"] == sha(GOOD)
    assert sorted(os.listdir(tmp_path)) == ["2" * 64]


def test_a_finished_image_is_not_fetched_again(tmp_path, serve):
    url, hits = serve(GOOD)
    ensure_image(str(tmp_path), IMAGE, url, sha(GOOD))
    ensure_image(str(tmp_path), IMAGE, url, sha(GOOD))
    assert len(hits) == 1


def test_a_digest_mismatch_names_both_digests_and_leaves_nothing(tmp_path, serve):
    url, _ = serve(GOOD)
    with pytest.raises(ImageError, match=f"has sha256 {sha(GOOD)}, expected {'0' * 64}"):
        ensure_image(str(tmp_path), IMAGE, url, "0" * 64)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("member", [
    pytest.param(("../evil", "file", "x"), id="dot-dot"),
    pytest.param(("/etc/evil", "file", "x"), id="absolute"),
    pytest.param(("app/deeper/../../../evil", "file", "x"), id="dot-dot-deep"),
])
def test_a_member_escaping_the_folder_is_refused(tmp_path, serve, member):
    data = archive([("app", "dir", None), member])
    url, _ = serve(data)
    images_dir = tmp_path / "images"
    with pytest.raises(ImageError, match="outside the image folder"):
        ensure_image(str(images_dir), IMAGE, url, sha(data))
    assert os.listdir(images_dir) == []
    assert not (tmp_path / "evil").exists()


def test_a_file_written_through_a_symlink_out_of_the_folder_is_refused(tmp_path, serve):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = archive([("app", "dir", None), ("app/link", "symlink", str(outside)), ("app/link/evil", "file", "x")])
    url, _ = serve(data)
    images_dir = tmp_path / "images"
    with pytest.raises(ImageError):
        ensure_image(str(images_dir), IMAGE, url, sha(data))
    assert os.listdir(outside) == [] and os.listdir(images_dir) == []


def test_a_bad_image_id_is_one_sentence(tmp_path):
    with pytest.raises(ImageError, match="sha256:<64 hex digits>"):
        ensure_image(str(tmp_path), "latest", "http://127.0.0.1:9/x", "0" * 64)


def test_losing_the_rename_race_uses_the_winner(tmp_path, serve, monkeypatch):
    url, _ = serve(GOOD)
    winner = ensure_image(str(tmp_path), IMAGE, url, sha(GOOD))
    marker = layout.read_marker(str(tmp_path), IMAGE)
    # Pretend the winner finished while this fetch was downloading: hide it from the first look only.
    real = layout.read_marker
    looks = []

    def first_look_misses(images_dir, image_id):
        looks.append(1)
        return None if len(looks) == 1 else real(images_dir, image_id)
    monkeypatch.setattr(layout, "read_marker", first_look_misses)
    assert ensure_image(str(tmp_path), IMAGE, url, sha(GOOD)) == winner
    assert real(str(tmp_path), IMAGE) == marker
    assert sorted(os.listdir(tmp_path)) == ["2" * 64]


def test_the_cache_fetches_one_image_once_for_many_callers(tmp_path, serve):
    url, hits = serve(GOOD)
    cache = ImageCache(str(tmp_path))
    pool = eventlet.GreenPool()
    paths = list(pool.imap(lambda _: cache.ensure(IMAGE, url, sha(GOOD)), range(5)))
    assert len(set(paths)) == 1 and len(hits) == 1
