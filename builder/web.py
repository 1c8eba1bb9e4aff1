"""The builder's HTTP face: finished image archives, and a health check.

::

    GET  /healthz                 200 "ok"
    GET  /images/<hex>.tar.gz     200 the archive, streamed; Content-Length;
    HEAD /images/<hex>.tar.gz         X-Corral-Sha256: <hex sha256 of the archive>
                                  404 when the image is not finished here

Reading images needs no token: an agent learns the archive's sha256 from a
signed message and verifies what it downloaded against it. Only finished
images are served (those with a marker), never an archive being written.
"""
import os
import re

from builder.artifacts import artifact_path
from corral import images

_IMAGE_PATH = re.compile(r"^/images/([0-9a-f]{64})\.tar\.gz$")
_CHUNK = 1 << 16


def make_app(*, images_dir, cache_dir):
    """The WSGI application serving the archives of the images finished in ``images_dir``."""

    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD are served\n",
                              [("Allow", "GET, HEAD")])
            return _plain(start_response, "200 OK", "ok\n", head=method == "HEAD")
        match = _IMAGE_PATH.match(path)
        if not match:
            return _plain(start_response, "404 Not Found", f"no such path: {path}\n")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD are served\n",
                          [("Allow", "GET, HEAD")])
        hex_digest = match.group(1)
        marker = images.read_marker(images_dir, "sha256:" + hex_digest)
        archive = artifact_path(cache_dir, hex_digest)
        try:
            if not marker or not marker.get("artifact_sha256"):
                raise FileNotFoundError(archive)
            f = open(archive, "rb")
        except OSError:
            return _plain(start_response, "404 Not Found", f"image sha256:{hex_digest} is not built here\n")
        size = os.fstat(f.fileno()).st_size
        start_response("200 OK", [
            ("Content-Type", "application/gzip"),
            ("Content-Length", str(size)),
            ("X-Corral-Sha256", marker["artifact_sha256"]),
        ])
        if method == "HEAD":
            f.close()
            return [b""]
        return _FileChunks(f)

    return app


class _FileChunks:
    """Iterates a file in chunks and closes it when the server is done with it."""

    def __init__(self, f):
        self._f = f

    def __iter__(self):
        return iter(lambda: self._f.read(_CHUNK), b"")

    def close(self):
        self._f.close()


def _plain(start_response, status, text, extra=(), head=False):
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [b""] if head else [body]
