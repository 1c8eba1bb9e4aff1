"""POST /v1/apps/NAME/scale on both stores: one process's count changes and nothing else of the app
(its secrets stay as stored, not as the API shows them), as a new generation with a Scaled event;
the same count again writes nothing; a bad request is one sentence and writes nothing."""
import io
import json

import pytest

from reconciler.api import Api, HttpError


def post(api, name, body):
    raw = json.dumps(body).encode()
    return api.scale({"CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}, {}, name)


@pytest.fixture
def api(store):
    store.apply_apps([{"name": "hello", "labels": {"team": "web"}, "source_digest": "sha256:src1", "spec": {
        "env": {"SECRET": "s3cret"}, "source": "./hello",
        "processes": {"web": {"command": "serve", "instances": 2}, "worker": {"command": "work", "instances": 1}}}}],
        actor="cli")
    kicked = []
    api = Api(store, state=None, token="t", kick=lambda *apps: kicked.append(apps))
    api.kicked = kicked
    return api


def test_scale_changes_one_count_keeps_the_rest_and_says_so(api, store):
    assert post(api, "hello", {"process": "web", "instances": 5}) == (200, {
        "name": "hello", "process": "web", "instances": 5, "action": "configured", "generation": 2})
    app = store.get_app("hello")
    assert app.spec["processes"]["web"]["instances"] == 5 and app.spec["processes"]["worker"]["instances"] == 1
    assert app.spec["env"] == {"SECRET": "s3cret"} and app.labels == {"team": "web"}
    assert app.source_digest == "sha256:src1"
    assert api.kicked == [("hello",)]
    assert [e.reason for e in store.list_events(kind="app", name="hello")][-1] == "Scaled"


def test_the_same_count_again_writes_nothing(api, store):
    version = store.get_app("hello").resource_version
    assert post(api, "hello", {"process": "web", "instances": 2})[1]["action"] == "unchanged"
    assert store.get_app("hello").resource_version == version and api.kicked == []


@pytest.mark.parametrize("name,body,status,sentence", [
    ("hello", {"process": "web", "instances": -1}, 400, "instances must be a whole number from 0 (as in an app's spec)"),
    ("hello", {"process": "web", "instances": "3"}, 400, "instances must be a whole number from 0 (as in an app's spec)"),
    ("hello", {"process": "web", "instances": True}, 400, "instances must be a whole number from 0 (as in an app's spec)"),
    ("hello", {"process": "web", "instances": 2.5}, 400, "instances must be a whole number from 0 (as in an app's spec)"),
    ("hello", {"process": "cron", "instances": 1}, 400, "app 'hello' has no process 'cron' (it has web, worker)"),
    ("hello", {"process": ["web"], "instances": 1}, 400, "app 'hello' has no process ['web'] (it has web, worker)"),
    ("nope", {"process": "web", "instances": 1}, 404, "app 'nope' not found"),
])
def test_a_bad_request_is_one_sentence_and_writes_nothing(api, store, name, body, status, sentence):
    version = store.get_app("hello").resource_version
    with pytest.raises(HttpError) as caught:
        post(api, name, body)
    assert (caught.value.status, caught.value.message) == (status, sentence)
    assert store.get_app("hello").resource_version == version


def test_an_app_being_deleted_is_not_brought_back_by_a_scale(api, store):
    store.mark_app_deleting("hello", actor="cli")
    with pytest.raises(HttpError) as caught:
        post(api, "hello", {"process": "web", "instances": 3})
    assert caught.value.status == 409 and "being deleted" in caught.value.message
    assert store.get_app("hello").deleting
