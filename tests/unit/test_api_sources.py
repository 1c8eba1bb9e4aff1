"""PUT /v1/sources/DIGEST: the archive is checked before it is stored, and a small body that would
inflate without limit (a gzip bomb) is refused without inflating it."""
import gzip
import hashlib
import io
import zlib

import pytest

from corral import source
from reconciler.api import Api, HttpError


class Store:
    def __init__(self):
        self.sources = {}

    def put_source(self, digest, data):
        self.sources[digest] = data


def put(api, digest, body):
    environ = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    return api.put_source(environ, {}, digest)


@pytest.fixture
def api():
    return Api(Store(), state=None, token="t", kick=lambda: None)


def test_a_good_archive_is_stored(api):
    raw = b"tar bytes"
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert put(api, digest, gzip.compress(raw)) == (201, {"digest": digest})
    assert api.store.sources[digest] == gzip.compress(raw)


def test_a_gzip_bomb_is_refused_in_one_sentence_and_nothing_is_stored(api, monkeypatch):
    monkeypatch.setattr(source, "MAX_SOURCE_BYTES", 1 << 20)
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = squeezer.compress(b"\0" * (64 << 20)) + squeezer.flush()   # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 100 << 10
    with pytest.raises(HttpError) as caught:
        put(api, "sha256:" + "0" * 64, bomb)
    assert caught.value.status == 400
    assert caught.value.message == "source archive unpacks to over 1.0 MiB, the limit for a source"
    assert api.store.sources == {}


def test_not_gzip_is_a_400(api):
    with pytest.raises(HttpError) as caught:
        put(api, "sha256:" + "0" * 64, b"plain")
    assert caught.value.status == 400 and caught.value.message.startswith("source archive is not valid gzip")
