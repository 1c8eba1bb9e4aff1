"""Runs against hostile peers: an assignment replayed (or sent again by a confused or stale
leader) never starts a run a second time, not even after the agent restarts, nor at a
stale epoch; the runs API refuses what a hostile client sends (bad commands, a forged
exit code for a run that is not attached, a trigger of a process that has no schedule,
an unknown run), each with one sentence and nothing written."""
import corral.green

corral.green.patch()

import io  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402

import pytest  # noqa: E402

from corral.store.base import RunRecord  # noqa: E402
from corral.store.sqlite import SQLiteStore  # noqa: E402
from reconciler.httpio import HttpError  # noqa: E402
from reconciler.runs_api import RunRoutes  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    WAIT, agent, assignment, image_server, key_file, reconciler, wait_for)

APPEND = ["sh", "-c", "echo ran >> \"$CORRAL_RUN_FILE\""]


def run_entry(image_server, path, iid="job-tick-1"):
    entry = assignment(iid, image_server, APPEND, port=False, restart="never", env={"CORRAL_RUN_FILE": str(path)})
    entry["spec"]["run"] = True
    return entry


def ran(path):
    return path.read_text().count("ran") if path.exists() else 0


def test_a_run_assigned_again_after_it_ended_and_was_forgotten_never_starts_twice(agent, reconciler, image_server,
                                                                                  tmp_path):
    out = tmp_path / "ran.txt"
    first = agent()
    reconciler.assign([run_entry(image_server, out)], epoch=3)
    wait_for("the run to end", lambda: (i := reconciler.instance("job-tick-1")) and i["state"] == "stopped")
    reconciler.assign([], epoch=3)  # the leader ended the run: the agent forgets it
    wait_for("the run forgotten", lambda: reconciler.instance("job-tick-1") is None)
    reconciler.assign([run_entry(image_server, out)], epoch=3)  # a replayed or delayed assign
    reconciler.assign([run_entry(image_server, out)], epoch=2)  # and a stale one
    reconciler.reports.clear()
    wait_for("two reports after the replay", lambda: len(reconciler.reports) >= 2)
    assert reconciler.instance("job-tick-1") is None and ran(out) == 1
    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=WAIT) == 0
    reconciler.reports.clear()
    agent()  # a restarted agent remembers the runs it started (runs.json)
    reconciler.assign([run_entry(image_server, out)], epoch=3)
    wait_for("two reports of the restarted agent", lambda: len(reconciler.reports) >= 2)
    assert reconciler.instance("job-tick-1") is None and ran(out) == 1
    assert "refused to start run job-tick-1 again" in (tmp_path / "agent.log").read_text()


@pytest.fixture
def api(tmp_path):
    store = SQLiteStore(str(tmp_path / "corral.db"))
    store.migrate()
    store.apply_apps([{"name": "job", "labels": {}, "source_digest": "sha256:s", "spec": {"processes": {
        "web": {"command": "serve", "instances": 1, "restart": "always"},
        "tick": {"command": "tick", "schedule": "every 10s", "instances": 0, "restart": "never"}}}}], "cli")
    kicked = []
    routes = RunRoutes(store, lambda *apps: kicked.append(apps))

    def call(handler, payload, **kw):
        data = json.dumps(payload).encode()
        environ = {"wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data))}
        try:
            return getattr(routes, handler)(environ, {}, **kw)
        except HttpError as e:
            return e.status, e.message
    yield call, store
    store.close()


@pytest.mark.parametrize("payload, says", [
    ({"command": "rm -rf /"}, "command must be a list of 1 to 256 strings"),
    ({"command": []}, "command must be a list"),
    ({"command": ["a\0b"]}, "no NUL"),
    ({"command": ["x" * 9000]}, "at most 8192 characters"),
    ({"command": ["x"] * 257}, "1 to 256 strings"),
    ({"command": [1, 2]}, "list of 1 to 256 strings"),
    ({"command": ["id"], "process": "../../etc"}, "app 'job' has no process '../../etc'"),
    ({"command": ["id"], "process": ["web"]}, "has no process"),
])
def test_hostile_one_offs_are_refused_and_nothing_is_written(api, payload, says):
    call, store = api
    status, message = call("one_off", payload, name="job")
    assert status in (400, 404) and says in message
    assert store.list_runs() == []


def test_a_forged_exit_code_ends_no_run_but_an_attached_one(api):
    call, store = api
    scheduled = RunRecord(id="job-tick-1", app="job", process="tick", slot=10, kind="schedule", state="running",
                          node="n1", created_at=1.0, actor="x")
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.write_runs(epoch, runs=[scheduled])
    assert call("exit", {"exitCode": 0}, run_id="job-tick-1")[0] == 409
    assert call("exit", {"exitCode": 0}, run_id="nope")[0] == 409
    for bad in (-1, 256, True, "0", None):
        assert call("exit", {"exitCode": bad}, run_id="job-tick-1")[0] == 400
    assert store.list_runs()[0].exit_code is None


def test_trigger_is_for_scheduled_processes_of_existing_apps(api):
    call, store = api
    assert call("trigger", {"process": "web"}, name="job") == (
        400, "process 'web' of app 'job' has no schedule: trigger starts a scheduled process (for anything else, "
             "corral run)")
    assert call("trigger", {"process": "tick"}, name="nosuch") == (404, "app 'nosuch' not found")
    assert call("get_run", {}, run_id="../../etc/passwd") == (404, "run '../../etc/passwd' not found")
    status, run = call("trigger", {"process": "tick"}, name="job")
    assert status == 201 and run["state"] == "requested" and run["kind"] == "trigger"


def test_a_one_off_runs_the_callers_code_so_it_needs_admin_as_exec_does():
    from reconciler.api import role_needed
    assert role_needed("POST", "/v1/apps/job/runs", {}) == "admin"
    assert role_needed("POST", "/v1/runs/job-x-1/exit", {}) == "admin"
    assert role_needed("POST", "/v1/apps/job/trigger", {}) == "deploy"  # the app's own command
    assert role_needed("GET", "/v1/runs", {}) == "read"
