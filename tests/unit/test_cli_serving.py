"""What `corral up --apply` says about an app it applied (corral.cli.serving.judge). Pure."""
import io

from corral.cli import serving
from corral.cli.serving import Watch, judge


def app(gen=1, observed=1, ready=0, desired=2, **conds):
    return {"name": "hello", "generation": gen, "observedGeneration": observed, "ready": ready, "desired": desired,
            "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, (s, r, m) in conds.items()]}


def inst(iid, ready=False, state="running", restarts=0, port=8000, message=None, desired=True):
    return {"id": iid, "app": "hello", "ready": ready, "state": state, "restarts": restarts,
            "address": "127.0.0.1", "port": port, "message": message, "desired": desired}


COMPLETE = ("True", "Complete", "2 of 2 ready")


def test_a_complete_rollout_serves_and_says_where():
    got = judge(app(ready=2, Progressing=COMPLETE), [inst("a", True, port=8001), inst("b", True, port=8002)], None, 1)
    assert got == serving.Outcome("serving", "app/hello is serving: 2 of 2 instances ready at "
                                             "http://127.0.0.1:8001/ http://127.0.0.1:8002/")


def test_a_complete_rollout_of_an_older_generation_is_still_waiting():
    assert judge(app(observed=1, ready=2, Progressing=COMPLETE), [inst("a", True)], None, 2).kind == "waiting"


def test_a_failed_build_is_a_failure_naming_its_reason():
    got = judge(app(Built=("False", "BuildFailed", "no matching distribution for nosuchpkg")), [], None, 1)
    assert got.kind == "failed" and got.text == "app/hello: the build failed: no matching distribution for nosuchpkg"


def test_an_instance_that_cannot_run_is_a_failure_at_once():
    got = judge(app(), [inst("a", state="failed", message="user corral-hello cannot reach /root")], None, 1)
    assert got == serving.Outcome("failed", "app/hello: instance a cannot run: user corral-hello cannot reach /root", "a")


def test_an_instance_restarting_again_and_again_is_a_failure_with_its_id():
    got = judge(app(), [inst("a", state="backoff", restarts=3, message="exited with code 126; restarting in 8s")],
                None, 1)
    assert got.kind == "failed" and got.instance == "a"
    assert got.text == "app/hello: instance a keeps exiting (3 restarts; exited with code 126; restarting in 8s)"


def test_a_few_restarts_of_a_ready_instance_or_of_a_stale_one_are_not_a_failure():
    insts = [inst("a", ready=True, restarts=5), inst("old", state="backoff", restarts=9, desired=False)]
    assert judge(app(), insts, None, 1).kind == "waiting"


def test_a_build_in_progress_shows_its_phase():
    got = judge(app(observed=0), [], {"id": 7, "state": "building", "progress": "install"}, 1)
    assert got == serving.Outcome("building", "app/hello build 7: install")


class FakeClient:
    """The three reads a Watch makes, answered from dicts that the test changes between looks."""

    def __init__(self):
        self.app, self.instances, self.builds = app(observed=0), [], []

    def get(self, path, params=None):
        return {"/v1/apps/hello": self.app, "/v1/instances": self.instances}.get(path, self.builds)


def test_the_watch_prints_each_outcome_once_and_ends_when_the_app_serves():
    client, out, err = FakeClient(), io.StringIO(), io.StringIO()
    watch = Watch(client, [{"kind": "App", "name": "hello", "generation": 1, "action": "created"}], out, err)
    client.builds = [{"id": 1, "state": "building", "progress": "resolve"}]
    watch.look()
    watch.look()
    client.builds = [{"id": 1, "state": "succeeded"}]
    client.app = app(ready=2, Progressing=COMPLETE)
    client.instances = [inst("a", True, port=8001), inst("b", True, port=8002)]
    assert not watch.done
    watch.look()
    assert watch.done
    assert err.getvalue() == "app/hello build 1: resolve\n"
    assert out.getvalue().startswith("app/hello is serving: 2 of 2 instances ready at http://127.0.0.1:8001/")


def test_a_failing_instance_is_news_once_however_its_restarts_change(monkeypatch):
    client, out, err = FakeClient(), io.StringIO(), io.StringIO()
    watch = Watch(client, [{"kind": "App", "name": "hello", "generation": 1}], out, err)
    monkeypatch.setattr(serving, "last_output", lambda client, iid, lines=3: ["boom"])
    for restarts in (3, 4, 5):
        client.instances = [inst("a", state="backoff", restarts=restarts, message=f"exited; restart {restarts}")]
        watch.look()
    said = err.getvalue().splitlines()
    assert said[0] == "corral up: app/hello: instance a keeps exiting (3 restarts; exited; restart 3)"
    assert said[1] == "corral up:   a | boom" and len(said) == 3 and not watch.done
