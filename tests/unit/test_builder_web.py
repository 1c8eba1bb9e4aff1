"""The layer server's WSGI app, called directly: which requests get what."""
import io
import json
import os

import pytest

from builder.archives import archive_path
from builder.web import make_app as _make_app
from corral import layer_access, versions
from corral.image_layout import write_layer_marker
from corral.store.schema import SCHEMA_VERSION

HEX = "ab" * 32
BODY = b"\x1f\x8b not really gzip" * 10000
KEY = b"k" * 32
NOW = 1_800_000_000


class Keys:
    """The layer keys as a builder holds them (corral.layer_keyring.LayerKeyRing's checking)."""

    def checking(self, missed=False):
        return [KEY]


def make_app(**dirs):
    return _make_app(keys=Keys(), clock=lambda: NOW, **dirs)


def credential(path, node="node-1", exp=NOW + 60):
    """The query the leader signs for ``node`` and the layer at ``path`` (a layer path), or "" for another path."""
    parts = path.split("/")
    if len(parts) != 4 or not parts[3].endswith(".tar"):
        return ""
    kind, hexid = parts[2], parts[3][:-4]
    return f"node={node}&exp={exp}&sig={layer_access.sign(KEY, kind, hexid, node, exp)}"


def call(app, method, path, query=None):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(),
               "QUERY_STRING": credential(path) if query is None else query}
    result = app(environ, start_response)
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


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_layer_without_a_credential_is_401_and_with_a_bad_one_403(dirs, method):
    finish(*dirs)
    app = make_app(images_dir=dirs[0], cache_dir=dirs[1])
    path = f"/layers/env/{HEX}.tar"
    status, headers, body = call(app, method, path, query="")
    assert status == "401 Unauthorized" and "WWW-Authenticate" in headers
    assert (body == b"") if method == "HEAD" else (b"credential" in body)
    for query in (credential(f"/layers/code/{HEX}.tar"), credential(path, exp=NOW - 1),
                  credential(path).replace("node=node-1", "node=node-2")):
        assert call(app, method, path, query=query)[0] == "403 Forbidden"


def test_no_credential_learns_whether_a_layer_is_here(dirs):
    """Refused before the layer is looked for: an unknown layer answers as a known one does."""
    finish(*dirs)
    app = make_app(images_dir=dirs[0], cache_dir=dirs[1])
    assert call(app, "GET", "/layers/env/" + "ef" * 32 + ".tar", query="")[0] == "401 Unauthorized"
    assert call(app, "GET", f"/layers/env/{HEX}.tar", query="")[0] == "401 Unauthorized"


def test_the_health_route_needs_no_credential(dirs):
    assert call(make_app(images_dir=dirs[0], cache_dir=dirs[1]), "GET", "/healthz", query="")[0] == "200 OK"


def test_each_answer_to_a_layer_request_is_counted(dirs):
    from builder.metrics import BuilderMetrics

    finish(*dirs)
    metrics = BuilderMetrics()
    app = _make_app(keys=Keys(), clock=lambda: NOW, metrics=metrics, images_dir=dirs[0], cache_dir=dirs[1])
    path = f"/layers/env/{HEX}.tar"
    call(app, "GET", path)
    call(app, "HEAD", path, query="")
    call(app, "GET", path, query="")
    call(app, "GET", path, query=credential(path, exp=NOW - 1))
    call(app, "GET", "/layers/env/" + "ef" * 32 + ".tar")
    call(app, "GET", "/healthz", query="")

    def count(answer):
        return metrics.registry.get_sample_value("corral_builder_layer_requests_total", {"answer": answer})
    assert (count("served"), count("unauthorized"), count("forbidden"), count("missing")) == (1, 2, 1, 1)
