"""One owner per host and path, through the real API handlers over a real store: an apply, and a
rollout undo to a revision whose routes another app owns now, are refused with a sentence naming
the owner, and write nothing (tests/store/test_apps.py races two applies)."""
import io
import json

import pytest

from corral.store.base import RevisionRecord
from reconciler.api import Api, HttpError
from tests.support import fresh_store


def spec(host):
    return {"processes": {"web": {"command": "serve", "port": True, "instances": 1}},
            "routes": [{"host": host, "path": "/"}]}


def doc(name, host):
    return {"name": name, "labels": {}, "spec": spec(host), "source_digest": "sha256:" + "a" * 64}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with fresh_store(request.param, str(tmp_path)) as s:
        yield s


def post(handler, body, *args):
    raw = json.dumps(body).encode()
    return handler({"CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}, {}, *args)


def undo_handler(api):
    [handler] = [h for method, pattern, h, _ in api.routes if pattern.endswith("/undo")]
    return handler


def test_an_undo_to_routes_another_app_owns_now_is_refused_naming_it(store):
    api = Api(store, state=None, token="t", kick=lambda *apps: None, cluster_domain="test")
    store.put_source("sha256:" + "a" * 64, b"an archive")
    store.apply_apps([doc("b", "shop.test")], actor="cli")
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.record_revisions(epoch, [RevisionRecord("b", 1, "h1", "img", spec("shop.test"), "sha256:" + "a" * 64, 1, 1.0)])
    store.apply_apps([doc("b", "other.test")], actor="cli")      # b leaves shop.test ...
    store.apply_apps([doc("a", "shop.test")], actor="cli")       # ... and a takes it
    before = store.get_app("b")
    with pytest.raises(HttpError) as refused:
        post(undo_handler(api), {"toRevision": 1}, "b")
    assert refused.value.status == 409
    assert refused.value.message == (
        "app 'b': revision 1 cannot come back: app b: host shop.test path / is already routed to app a; "
        "remove it from a's routes first, or choose another host or path")
    assert store.get_app("b") == before, "the refused undo wrote something"
