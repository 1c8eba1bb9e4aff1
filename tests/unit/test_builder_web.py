"""The layer server's WSGI app, called directly: which requests get what."""
import io
import json
import os

import pytest

from builder.archives import archive_path
from builder.web import make_app
from corral import versions
from corral.image_layout import write_layer_marker
from corral.store.schema import SCHEMA_VERSION

HEX = "ab" * 32
BODY = b"\x1f\x8b not really gzip" * 10000


def call(app, method, path):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    result = app({"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}, start_response)
    body = b"".join(result)
    getattr(result, "close", lambda: None)()
    return seen["status"], seen["headers"], body


@pytest.fixture
def dirs(tmp_path):
    images, cache = tmp_path / "images", tmp_path / "cache"
    (images / "env" / HEX).mkdir(parents=True)
    return str(images), str(cache)


def finish(images, cache):
    path = archive_path(cache, "env", HEX)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(BODY)
    write_layer_marker(images, "env", "sha256:" + HEX, {"id": "sha256:" + HEX, "artifact_sha256": "cd" * 32})


def test_healthz_says_the_builders_version(dirs):
    status, headers, body = call(make_app(images_dir=dirs[0], cache_dir=dirs[1]), "GET", "/healthz")
    assert (status, headers["Content-Type"]) == ("200 OK", "application/json")
    assert json.loads(body) == {"ok": True, "role": "builder", **versions.local(SCHEMA_VERSION)}


def test_finished_image_is_served_whole_with_length_and_sha(dirs):
    finish(*dirs)
    status, headers, body = call(make_app(images_dir=dirs[0], cache_dir=dirs[1]), "GET", f"/layers/env/{HEX}.tar")
    assert status == "200 OK"
    assert body == BODY
    assert headers["Content-Length"] == str(len(BODY))
    assert headers["X-Corral-Sha256"] == "cd" * 32


def test_head_gives_headers_without_body(dirs):
    finish(*dirs)
    status, headers, body = call(make_app(images_dir=dirs[0], cache_dir=dirs[1]), "HEAD", f"/layers/env/{HEX}.tar")
    assert (status, body, headers["Content-Length"]) == ("200 OK", b"", str(len(BODY)))


def test_unfinished_image_is_not_served(dirs):
    images, cache = dirs
    finish(images, cache)
    os.unlink(os.path.join(images, "env", HEX + ".json"))
    assert call(make_app(images_dir=images, cache_dir=cache), "GET", f"/layers/env/{HEX}.tar")[0] == "404 Not Found"


@pytest.mark.parametrize("path", [
    "/layers/env/" + "ef" * 32 + ".tar",
    "/layers/code/" + "ab" * 32 + ".tar",
    "/layers/env/../../etc/passwd",
    "/layers/env/" + "AB" * 32 + ".tar",
    "/layers/lib/" + "ab" * 32 + ".tar",
    "/",
], ids=["unknown-layer", "other-kind", "traversal", "uppercase", "unknown-kind", "root"])
def test_other_paths_are_not_found(dirs, path):
    finish(*dirs)
    assert call(make_app(images_dir=dirs[0], cache_dir=dirs[1]), "GET", path)[0] == "404 Not Found"


def test_writes_are_refused(dirs):
    finish(*dirs)
    assert call(make_app(images_dir=dirs[0], cache_dir=dirs[1]), "PUT", f"/layers/env/{HEX}.tar")[0].startswith("405")
