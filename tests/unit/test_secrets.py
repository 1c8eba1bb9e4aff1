"""An app's env values are shown redacted wherever corral shows an app (corral.secrets): the app
JSON of the API, `corral diff`, GitOps drift sentences; the names stay, a change stays visible."""
import hashlib
import io
import json
import types

from corral.secrets import is_secret, redact, redact_spec
from reconciler.api import Api
from reconciler.gitops.plan import Live, app_differences, differences
from reconciler.views import app_json

SECRET = "s3cr3t-marmalade"
SPEC = {"source": "./src", "env": {"DB_PASSWORD": SECRET, "GREETING": "hi"},
        "processes": {"web": {"command": "serve", "instances": 1, "port": False}}}


def test_redact_shows_a_digest_prefix_not_the_value():
    assert redact(SECRET) == f"<redacted sha256:{hashlib.sha256(SECRET.encode()).hexdigest()[:8]}>"
    assert redact(SECRET) != redact(SECRET + "x")


def test_redact_spec_hides_every_env_value_keeps_the_names_and_leaves_the_input_alone():
    out = redact_spec(SPEC)
    assert set(out["env"]) == {"DB_PASSWORD", "GREETING"} and SECRET not in json.dumps(out)
    assert out["processes"] == SPEC["processes"] and SPEC["env"]["DB_PASSWORD"] == SECRET
    assert redact_spec({"source": "./src"}) == {"source": "./src"}


def test_is_secret_is_the_values_under_spec_env_only():
    assert is_secret(("spec", "env", "X")) and not is_secret(("spec", "env")) and not is_secret(("spec", "source"))


def record(spec):
    return types.SimpleNamespace(name="hello", labels={}, generation=1, status={}, resource_version=1, spec=spec,
                                 deleting=False, source_digest="sha256:a", owner=None, created_at=0.0,
                                 updated_at=0.0)


def test_the_app_json_redacts_unless_secrets_are_asked_for():
    assert SECRET not in json.dumps(app_json(record(SPEC)))
    assert app_json(record(SPEC), show_secrets=True)["spec"]["env"]["DB_PASSWORD"] == SECRET


def test_a_drift_sentence_names_the_field_and_shows_digests():
    changed = dict(SPEC, env=dict(SPEC["env"], DB_PASSWORD="new-" + SECRET))
    said = differences({"spec": SPEC}, {"spec": changed})
    assert said == [f"spec.env.DB_PASSWORD: live {redact(SECRET)}, git {redact('new-' + SECRET)}"]
    added = differences({"spec": {"env": {}}}, {"spec": {"env": {"TOKEN": SECRET}}})
    assert added == [f"spec.env.TOKEN: live absent, git {redact(SECRET)}"]
    live = Live("hello", {}, SPEC, "sha256:a", None, False)
    assert SECRET not in " ".join(app_differences(live, types.SimpleNamespace(
        labels={}, spec=dict(SPEC, env={}), source_digest="sha256:a")))


class Store:
    def __init__(self, rec):
        self.rec = rec

    def get_app(self, name):
        return self.rec

    def list_apps(self):
        return [self.rec]


def call(api, handler, query, *args, body=None):
    environ = {"CONTENT_LENGTH": str(len(body or b"")), "wsgi.input": io.BytesIO(body or b"")}
    return handler(environ, query, *args)


def test_the_api_shows_values_only_when_asked():
    api = Api(Store(record(SPEC)), state=None, token="t", kick=lambda: None)
    assert SECRET not in json.dumps(call(api, api.get_app, {}, "hello")[1])
    assert SECRET not in json.dumps(call(api, api.list_apps, {})[1])
    assert call(api, api.get_app, {"showSecrets": "true"}, "hello")[1]["spec"]["env"]["DB_PASSWORD"] == SECRET


def test_diff_shows_a_changed_secret_as_a_changed_digest():
    api = Api(Store(record(SPEC)), state=None, token="t", kick=lambda: None)
    changed = dict(SPEC, env=dict(SPEC["env"], DB_PASSWORD="other"))
    api._documents = lambda environ: ([{"name": "hello", "labels": {}, "spec": changed,
                                        "source_digest": "sha256:a"}], False)
    diff = call(api, api.diff, {})[1]["diffs"][0]
    assert diff["action"] == "configured" and SECRET not in diff["diff"] and "other" not in diff["diff"]
    assert redact(SECRET) in diff["diff"] and redact("other") in diff["diff"]
