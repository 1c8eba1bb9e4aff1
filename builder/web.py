"""The builder's HTTP face: finished layer archives, to a node holding a credential; and a health check.

::

    GET  /healthz                      200 {"ok": true, "version": ..., "schema": ...} (JSON), to anyone
    GET  /layers/<kind>/<hex>.tar?node=NAME&exp=UNIX&sig=HEX
                                       200 the archive, streamed from disk; Content-Length;
    HEAD (the same)                        X-Corral-Sha256: <hex sha256 of the archive>
                                       401 without a credential; 403 with one that is not for this
                                       layer, was signed for it with no key held, or has expired
                                       404 when the layer is neither finished here nor copied
                                       here from the builder that made it (builder.replicas)

``kind`` is ``env`` or ``code``. The credential is the URL the leader
signed for one node and this layer (:mod:`corral.layer_access`), with a
layer key read from the store (``keys``: a :class:`corral.layer_keyring.LayerKeyRing`);
the builder holds no cluster key. It is checked before anything else is
done for the request (no packing, no file opened). The agent still
verifies length and sha256 of what it downloads against its signed
assignment. Only finished layers are served (those with a
marker), never an archive being written: a layer whose archive is not
packed yet (the build is recorded first; or its builder was killed
mid-pack) is packed, or waited for, before the answer
(builder.layers.ensure_archive). The body is the server's file
wrapper (``wsgi.file_wrapper``) when it has one, else 1 MiB reads.
"""
import json
import os
import re
import time

from builder import replicas
from builder.archives import archive_path
from builder.layers import ensure_archive
from corral import image_layout, layer_access, versions
from corral.store import StoreError
from corral.store.schema import SCHEMA_VERSION

_LAYER_PATH = re.compile(r"^/layers/(env|code)/([0-9a-f]{64})\.tar$")
_CHUNK = 1 << 20


def make_app(*, images_dir, cache_dir, keys, clock=time.time, metrics=None):
    """The WSGI application serving the archives of the layers finished in ``images_dir`` to
    requests that carry a credential made with one of ``keys``' layer keys; each answer to a layer
    request is counted in ``metrics`` (a :class:`builder.metrics.BuilderMetrics`) when given."""
    count = metrics.answered if metrics is not None else (lambda answer: None)

    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD are served\n",
                              [("Allow", "GET, HEAD")])
            body = json.dumps({"ok": True, "role": "builder", **versions.local(SCHEMA_VERSION)}) + "\n"
            return _plain(start_response, "200 OK", body, head=method == "HEAD", content_type="application/json")
        match = _LAYER_PATH.match(path)
        if not match:
            return _plain(start_response, "404 Not Found", f"no such path: {path}\n")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD are served\n",
                          [("Allow", "GET, HEAD")])
        kind, hex_digest = match.group(1), match.group(2)
        refused = _refused(keys, environ.get("QUERY_STRING", ""), kind, hex_digest, clock())
        if refused is not None:
            count({"401": "unauthorized", "403": "forbidden"}.get(refused[0][:3], "missing"))
            return _plain(start_response, *refused, head=method == "HEAD")
        try:
            sha, f = _layer_file(images_dir, cache_dir, kind, hex_digest)
        except FileNotFoundError:
            count("missing")
            return _plain(start_response, "404 Not Found", f"{kind} layer sha256:{hex_digest} is not built here\n")
        except OSError as exc:
            return _plain(start_response, "500 Internal Server Error",
                          f"{kind} layer sha256:{hex_digest} cannot be packed: {exc}\n")
        size = os.fstat(f.fileno()).st_size
        count("served")
        if method == "GET":
            image_layout.touch_layer(images_dir, kind, "sha256:" + hex_digest)   # fetched: recently used
        start_response("200 OK", [
            ("Content-Type", "application/x-tar"),
            ("Content-Length", str(size)),
            ("X-Corral-Sha256", sha),
        ])
        if method == "HEAD":
            f.close()
            return [b""]
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(f, _CHUNK) if wrapper else _FileChunks(f)

    return app


def _layer_file(images_dir, cache_dir, kind, hex_digest):
    """``(sha256, open file)`` of the layer's archive: of a layer finished here (packed first if need
    be), else of this builder's copy of another builder's (builder.replicas). FileNotFoundError: neither."""
    try:
        sha, _ = ensure_archive(images_dir=images_dir, cache_dir=cache_dir, kind=kind, layer_id="sha256:" + hex_digest)
        return sha, open(archive_path(cache_dir, kind, hex_digest), "rb")
    except FileNotFoundError:
        copy = replicas.copy_of(cache_dir, kind, hex_digest)
        if copy is None:
            raise
        return copy[1], open(copy[0], "rb")


def _refused(keys, query, kind, hex_digest, now):
    """None when ``query`` holds a credential for the layer; else the answer's ``(status, text,
    headers)``. A 403 has the keys read again first (at most every few seconds: a key
    rotated a moment ago explains a signature no key held does)."""
    try:
        verdict = layer_access.check(query, kind, hex_digest, keys.checking(), now)
        if verdict is not None and verdict[0] == 403:
            verdict = layer_access.check(query, kind, hex_digest, keys.checking(missed=True), now)
    except StoreError as exc:
        return "503 Service Unavailable", f"the layer keys cannot be read from the store: {exc}\n", ()
    if verdict is None:
        return None
    status, text = verdict
    if status == 401:
        return "401 Unauthorized", text, [("WWW-Authenticate", 'Signature realm="corral layers"')]
    return "403 Forbidden", text, ()


class _FileChunks:
    """Iterates a file in chunks and closes it when the server is done with it."""

    def __init__(self, f):
        self._f = f

    def __iter__(self):
        return iter(lambda: self._f.read(_CHUNK), b"")

    def close(self):
        self._f.close()


def _plain(start_response, status, text, extra=(), head=False, content_type="text/plain; charset=utf-8"):
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [b""] if head else [body]
