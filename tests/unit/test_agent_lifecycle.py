"""The instance lifecycle: the pure state machine (nodeagent.lifecycle.step) as a table, and the
worker driven through it against a fake host seam (a Launcher that records calls, no processes)."""
import signal

import eventlet
import pytest

from nodeagent import lifecycle
from nodeagent.pull import ImageError
from nodeagent.instance import ExitWatch, Instance
from nodeagent.wakeup import Wakeup
from nodeagent.lifecycle import (Action, Adopted, AlreadyFinished, BackoffOver, CannotRun, Checked, Crashed, Exited,
                                 Fetching, ImageFailed, Spawned, State, Status, StopRequested, Stopped, step)
from nodeagent.process import EXIT_UNKNOWN
from nodeagent.restart import Backoff
from nodeagent.users import OwnUser

NOW = 1000.0
BACKOFF = Backoff(first=1.0, cap=300.0, reset_after=600.0)

RUNNING = Status(state=State.RUNNING, ready=True, started_at=NOW - 5)
STARTING = Status(state=State.STARTING, started_at=NOW - 5)


def decide(status, event, policy="always"):
    return step(status, event, now=NOW, policy=policy, backoff=BACKOFF)


@pytest.mark.parametrize("status, event, policy, state, action, fields", [
    (Status(), Fetching(), "always", State.PENDING, Action.CONTINUE, {"message": "fetching image"}),
    (Status(), ImageFailed("digest mismatch"), "always", State.FAILED, Action.RETRY,
     {"message": "digest mismatch", "image_failures": 1}),
    (Status(), CannotRun("command 'x' was not found"), "always", State.FAILED, Action.IDLE, {"ready": False}),
    (Status(exit_code=0), AlreadyFinished("exited with code 0"), "on-failure", State.STOPPED, Action.IDLE,
     {"finished": True}),
    (Status(exit_code=2), AlreadyFinished("exited with code 2"), "never", State.FAILED, Action.IDLE,
     {"finished": True}),
    (Status(), Spawned(), "always", State.STARTING, Action.CONTINUE, {"started_at": NOW, "message": None}),
    (Status(state=State.BACKOFF, restarts=2, exit_code=1), Spawned(), "always", State.STARTING, Action.CONTINUE,
     {"message": "last run: exited with code 1", "run_message": "last run: exited with code 1",
      "backoff_until": None}),
    (Status(started_at=NOW - 60), Adopted(), "always", State.STARTING, Action.CONTINUE,
     {"started_at": NOW - 60, "message": "adopted after an agent restart"}),
    (STARTING, Checked(True), "always", State.RUNNING, Action.CONTINUE, {"ready": True}),
    (STARTING, Checked(False, "HTTP 404"), "always", State.STARTING, Action.CONTINUE,
     {"ready": False, "message": "HTTP 404"}),
    (RUNNING, Checked(False, "HTTP 500"), "always", State.RUNNING, Action.CONTINUE,
     {"ready": False, "message": "HTTP 500"}),
    (RUNNING, Exited(3), "always", State.BACKOFF, Action.RESTART,
     {"exit_code": 3, "failures": 1, "backoff_until": NOW + 1.0, "message": "exited with code 3; restarting in 1s"}),
    (RUNNING, Exited(0), "on-failure", State.STOPPED, Action.IDLE, {"finished": True, "exit_code": 0}),
    (RUNNING, Exited(0), "always", State.BACKOFF, Action.RESTART, {"exit_code": 0}),
    (RUNNING, Exited(-9), "on-failure", State.BACKOFF, Action.RESTART, {"message": "killed by SIGKILL; restarting in 1s"}),
    (RUNNING, Exited(1), "never", State.FAILED, Action.IDLE, {"finished": True, "ready": False}),
    (RUNNING, Exited(-9, oom_limit=64 << 20), "never", State.FAILED, Action.IDLE,
     {"message": "OOMKilled: went over its memory limit of 64Mi (killed by SIGKILL)"}),
    (RUNNING, Exited(-15, why="health check failed 3 times in a row: HTTP 500"), "always", State.BACKOFF,
     Action.RESTART, {"message": "health check failed 3 times in a row: HTTP 500; restarting in 1s"}),
    (Status(started_at=None), Exited(EXIT_UNKNOWN), "always", State.BACKOFF, Action.RESTART,
     {"exit_code": EXIT_UNKNOWN}),
    (Status(state=State.BACKOFF, restarts=1), BackoffOver(), "always", State.BACKOFF, Action.CONTINUE,
     {"restarts": 2}),
    (RUNNING, StopRequested(), "always", State.STOPPING, Action.CONTINUE, {"ready": False, "message": "stopping"}),
    (Status(state=State.STOPPING, exit_code=3), Stopped(None, "stopped"), "always", State.STOPPED, Action.IDLE,
     {"exit_code": 3}),
    (Status(state=State.STOPPING), Stopped(-15, "stopped"), "always", State.STOPPED, Action.IDLE, {"exit_code": -15}),
    (RUNNING, Crashed("agent error: KeyError: 'x'"), "always", State.FAILED, Action.IDLE, {"ready": False}),
], ids=["fetch", "image-failed", "cannot-run", "finished-0", "finished-2", "spawned", "respawned-shows-last-run",
        "adopted-keeps-its-start", "first-ready", "not-ready-while-starting", "turns-not-ready", "crash-restarts",
        "on-failure-exit-0-is-done", "always-restarts-exit-0", "on-failure-signal-restarts", "never-is-done",
        "oom-killed", "liveness", "died-while-agent-down", "backoff-over", "stop", "stopped-keeps-last-code",
        "stopped-with-code", "agent-fault"])
def test_step(status, event, policy, state, action, fields):
    decision = decide(status, event, policy)
    assert (decision.status.state, decision.action) == (state, action)
    assert {k: getattr(decision.status, k) for k in fields} == fields


def test_a_crash_loop_doubles_the_delay_and_a_long_run_starts_it_over():
    status, delays = RUNNING, []
    for _ in range(4):
        status = decide(status, Exited(1)).status
        delays.append(status.backoff_until - NOW)
        status = decide(decide(status, BackoffOver()).status, Spawned()).status
    assert delays == [1.0, 2.0, 4.0, 8.0]
    long_run = Status(state=State.RUNNING, started_at=NOW - 600, failures=4)
    assert decide(long_run, Exited(1)).delay == 1.0


def test_on_failure_with_retries_gives_up_after_them():
    """retries: 2 under on-failure: the run is tried three times, then it is failed for good."""
    status, spawns = RUNNING, 1
    while True:
        decision = step(status, Exited(3), now=NOW, policy="on-failure", backoff=BACKOFF, retries=2)
        if decision.action != Action.RESTART:
            break
        status = decide(decide(decision.status, BackoffOver()).status, Spawned()).status
        spawns += 1
    assert spawns == 3
    assert (decision.status.state, decision.status.finished) == (State.FAILED, True)
    assert decision.status.message == "exited with code 3; no retry left (retries: 2)"
    ok = step(RUNNING, Exited(0), now=NOW, policy="on-failure", backoff=BACKOFF, retries=0)
    assert (ok.status.state, ok.action) == (State.STOPPED, Action.IDLE)


def test_image_retries_back_off_too():
    first = decide(Status(), ImageFailed("x"))
    second = decide(first.status, ImageFailed("x"))
    assert (first.delay, second.delay) == (1.0, 2.0)


def test_a_readiness_check_that_changes_nothing_leaves_the_status_equal():
    assert decide(RUNNING, Checked(True)).status is RUNNING  # not even rebuilt: a check a second per instance


def test_an_unknown_event_is_an_error():
    with pytest.raises(TypeError, match="no transition"):
        decide(Status(), object())


# -- the worker against a fake host ------------------------------------------------

class FakeProc:
    def __init__(self, pid):
        self.pid = pid
        self.returncode = None
        self.polls = 0   # how often it was looked at: proof that a watcher ran, where nothing is to happen

    def poll(self):
        self.polls += 1
        return self.returncode


class FakeLauncher:
    """The process seam with no processes: records every call; a test ends a run by setting its returncode."""

    def __init__(self, adopt=None):
        self.calls = []
        self.procs = []
        self.adoptable = adopt

    def spawn(self, argv, env, cwd, log_dir, capture, uid=None, gid=None, cgroups=(), keep=((), ())):
        proc = FakeProc(1000 + len(self.procs))
        self.procs.append(proc)
        self.calls.append(("spawn", proc.pid))
        return proc

    def start_ticks(self, pid):
        return 7

    def adopt(self, pid, ticks):
        self.calls.append(("adopt", pid))
        return self.adoptable

    def exit_fd(self, proc):
        return None   # no real process: the ExitWatch polls it

    def probe(self, check, address, port, env, cwd, run_as=None):
        return True, None

    def probe_now(self, check, address, port):
        return None   # every check the whole way (probe), in a thread of its own

    def terminate(self, proc, sig):
        self.calls.append(("terminate", proc.pid, sig))
        proc.returncode = -sig
        return True

    def signal_group(self, pgid, sig):
        self.calls.append(("signal_group", pgid, sig))
        return False

    def group_alive(self, pgid):
        return False

    def reap(self, proc):
        return proc.poll()


class FakeImages:
    def __init__(self, path, failures=0):
        self.path = path
        self.failures = failures

    def ensure(self, image, artifact):
        if self.failures:
            self.failures -= 1
            raise ImageError("layer download failed")
        return self.path


class FakePorts:
    def allocate(self):
        return None

    def reserve(self, port):
        pass

    def release(self, port):
        pass


def until(what, predicate, rounds=2000):
    for _ in range(rounds):
        if predicate():
            return
        eventlet.sleep(0.005)
    raise AssertionError(f"the worker never reached: {what}")


def make_instance(tmp_path, launcher, *, restart="always", images=None, record=None, resources=None):
    seen = []
    assignment = {"id": "hello-web-1", "app": "hello", "process": "web", "revision": "1",
                  "image": "sha256:" + "1" * 64, "artifact": {"layers": []},
                  "spec": {"command": ["/bin/true"], "env": {}, "port": False, "restart": restart,
                           "drainPeriod": 0, "stopGracePeriod": 1, "health": None, "resources": resources}}
    inst = Instance(assignment, node="node-1", address="127.0.0.1", data_dir=str(tmp_path),
                    image_cache=images or FakeImages(str(tmp_path / "images" / ("1" * 64))), launcher=launcher,
                    ports=FakePorts(), base_env={"PATH": "/bin"}, users=OwnUser(str(tmp_path), "/"),
                    backoff=Backoff(first=0.01, cap=0.02, reset_after=600.0), record=record,
                    on_change=lambda: seen.append((inst.state, inst.ready, inst.restarts)))
    return inst, seen


def test_the_worker_restarts_a_crashing_process_through_the_seam(tmp_path):
    launcher = FakeLauncher()
    inst, seen = make_instance(tmp_path, launcher)
    inst.start()
    until("running", lambda: inst.state == State.RUNNING)
    launcher.procs[0].returncode = 3
    until("the second run ready", lambda: len(launcher.procs) == 2 and inst.state == State.RUNNING)
    assert launcher.calls[:3] == [("spawn", 1000), ("signal_group", 1000, signal.SIGKILL), ("spawn", 1001)]
    assert [s for s, *_ in seen] == [State.PENDING, State.STARTING, State.RUNNING, State.BACKOFF, State.BACKOFF,
                                     State.STARTING, State.RUNNING]
    assert (inst.restarts, inst.message) == (1, "last run: exited with code 3")
    inst.request_stop()
    inst.wait()
    assert launcher.calls[-1] == ("terminate", 1001, signal.SIGTERM)
    assert (inst.state, inst.message, inst.gone) == (State.STOPPED, "stopped", True)


def test_on_failure_an_exit_0_is_done_with_one_spawn(tmp_path):
    launcher = FakeLauncher()
    inst, _ = make_instance(tmp_path, launcher, restart="on-failure")
    inst.start()
    until("running", lambda: inst.state == State.RUNNING)
    launcher.procs[0].returncode = 0
    until("stopped", lambda: inst.state == State.STOPPED)
    assert inst.finished and [c for c in launcher.calls if c[0] == "spawn"] == [("spawn", 1000)]
    inst.request_stop()
    inst.wait()


def test_an_image_that_fails_is_retried_before_the_first_spawn(tmp_path):
    launcher = FakeLauncher()
    inst, seen = make_instance(tmp_path, launcher, images=FakeImages(str(tmp_path / "img" / ("1" * 64)), failures=1))
    inst.start()
    until("running", lambda: inst.state == State.RUNNING)
    assert [s for s, *_ in seen][:3] == [State.PENDING, State.FAILED, State.PENDING]
    inst.request_stop()
    inst.wait()


def test_a_recorded_process_still_alive_is_adopted_not_spawned(tmp_path):
    alive = FakeProc(4242)
    alive.ticks = 7
    launcher = FakeLauncher(adopt=alive)
    record = {"assignment": None, "pid": 4242, "ticks": 7, "restarts": 2, "started_at": 10.0}
    inst, _ = make_instance(tmp_path, launcher, record=record)
    inst.start()
    until("running", lambda: inst.state == State.RUNNING)
    assert launcher.calls == [("adopt", 4242)]
    assert (inst.alive_pid(), inst.restarts, inst.status.started_at) == (4242, 2, 10.0)
    inst.request_stop()
    inst.wait()
    assert launcher.calls[-1] == ("terminate", 4242, signal.SIGTERM)


def test_a_stop_asked_before_a_recorded_process_is_watched_again_still_stops_it(tmp_path):
    """A new agent told to stop (SIGINT, or the instance no longer assigned) while it still checks the image."""
    alive = FakeProc(4242)
    alive.ticks = 7
    launcher = FakeLauncher(adopt=alive)
    record = {"assignment": None, "pid": 4242, "ticks": 7, "restarts": 0, "started_at": 10.0}
    inst, _ = make_instance(tmp_path, launcher, record=record,
                            images=FakeImages(str(tmp_path / "img" / ("1" * 64)), failures=100))
    inst.start()
    until("the image being retried", lambda: inst.state == State.FAILED)
    inst.request_stop()
    inst.wait()
    assert launcher.calls == [("adopt", 4242), ("terminate", 4242, signal.SIGTERM)]
    assert inst.state == State.STOPPED and alive.returncode == -signal.SIGTERM


def test_a_bad_memory_request_fails_the_instance_without_a_spawn(tmp_path):
    launcher = FakeLauncher()
    inst, _ = make_instance(tmp_path, launcher, resources={"memory": "64Mi"})
    inst.start()
    until("failed", lambda: inst.state == State.FAILED)
    assert inst.message == "the memory request '64Mi' is not a whole number of bytes"
    assert launcher.calls == []
    inst.request_stop()
    inst.wait()
    assert inst.state == State.STOPPED


def test_the_exit_watch_rings_the_worker_of_an_ended_process_and_stops_when_nothing_is_watched():
    watch = ExitWatch(interval=0.01)
    ends, runs = FakeProc(1), FakeProc(2)
    woken, idle = Wakeup(), Wakeup()
    watch.add(woken, ends)
    watch.add(idle, runs)
    until("the watch looked at both running processes twice", lambda: ends.polls >= 2 and runs.polls >= 2)
    assert not woken.wait(0), "the watch rang for a process that runs"
    ends.returncode = 3
    assert woken.wait(5)
    looked = runs.polls
    until("the watch looked at the one still running twice more", lambda: runs.polls >= looked + 2)
    assert not idle.wait(0), "the watch rang for a process that runs"
    watch.remove(idle)
    until("the watch thread ended", lambda: watch._thread is None)
    watch.add(idle, runs)  # watching again starts a thread again
    runs.returncode = 0
    assert idle.wait(5)
