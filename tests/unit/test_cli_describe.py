"""`corral describe app`: what an operator reads to learn why an app is not serving."""
import types

from corral.cli.commands import cmd_describe


class FakeClient:
    def __init__(self, app, instances, events):
        self.answers = {"/v1/apps/shop": app, "/v1/instances": instances, "/v1/events": events}

    def get(self, path, params=None):
        return self.answers[path]


APP = {"name": "shop", "labels": {}, "generation": 2, "observedGeneration": 2, "revision": "r2",
       "image": "sha256:ab", "source": "sha256:cd", "ready": 1, "desired": 2, "deleting": False,
       "spec": {"processes": {"web": {"command": "gunicorn app", "instances": 2, "port": True}}},
       "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                       "message": "1 of 2 ready"}]}


def instance(iid, state, message):
    return {"id": iid, "app": "shop", "process": "web", "node": "n1", "state": state, "ready": state == "running",
            "address": "10.0.0.1", "port": 8000, "restarts": 0, "started_at": None, "message": message}


def test_describe_shows_why_an_instance_does_not_run(capsys):
    refused = "image sha256:ab: not enough disk space: the layers need 120 MiB, 80 MiB free above the 2 GiB floor"
    client = FakeClient(APP, [instance("shop-web-1", "running", None), instance("shop-web-2", "failed", refused)],
                        [])
    assert cmd_describe(types.SimpleNamespace(kind="app", name="shop"), client) == 0
    out = capsys.readouterr().out
    assert f"Instance messages:\n  shop-web-2: {refused}\n" in out
    assert "shop-web-1:" not in out


def test_describe_has_no_messages_section_when_every_instance_is_quiet(capsys):
    client = FakeClient(APP, [instance("shop-web-1", "running", None)], [])
    cmd_describe(types.SimpleNamespace(kind="app", name="shop"), client)
    assert "Instance messages" not in capsys.readouterr().out
