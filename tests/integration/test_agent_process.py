"""The process seam against real processes: groups, signals, reaping."""
import corral.green

corral.green.patch()

import ctypes  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from nodeagent.process import PR_SET_CHILD_SUBREAPER, Launcher  # noqa: E402
from tests.support import need_root  # noqa: E402

PARENT_WITH_CHILD = ("import subprocess, sys, time; "
                     "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                     "print(c.pid, flush=True); time.sleep(600)")


def wait_until(what, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def texts(log_dir):
    """The ``(stream, text)`` of every line of ``output.log`` ([] before it exists)."""
    if not (log_dir / "output.log").exists():
        return []
    return [tuple(line.split(" ", 2)[1:]) for line in (log_dir / "output.log").read_text().splitlines()]


def test_spawn_runs_in_its_own_group_with_output_in_the_log(tmp_path):
    launcher = Launcher()
    log_dir = tmp_path / "logs"
    proc = launcher.spawn([sys.executable, "-c", "import os,sys; print(os.getpgid(0), flush=True); print('e', file=sys.stderr)"],
                          {"PATH": "/usr/bin:/bin"}, str(tmp_path), str(log_dir))
    wait_until("exit", lambda: launcher.reap(proc) is not None)
    lines = texts(log_dir)
    assert ("out", str(proc.pid)) in lines and ("err", "e") in lines, "the app runs in the capture process's group"


@pytest.fixture
def subreaper():
    """This test process as the reaper of orphans, for one test only (later tests expect init to reap theirs)."""
    yield
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_a_group_signal_reaches_the_child_and_reaping_leaves_no_zombie(tmp_path, subreaper):
    launcher = Launcher()
    assert launcher.become_subreaper()
    log_dir = tmp_path / "logs"
    proc = launcher.spawn([sys.executable, "-c", PARENT_WITH_CHILD], dict(os.environ), str(tmp_path), str(log_dir))
    wait_until("the child's pid", lambda: any(s == "out" for s, _ in texts(log_dir)))
    child = int(next(t for s, t in texts(log_dir) if s == "out"))
    assert launcher.group_alive(proc.pid)
    assert launcher.signal_group(proc.pid, signal.SIGKILL)
    wait_until("the group gone", lambda: (launcher.reap(proc), not launcher.group_alive(proc.pid))[1])
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{child}") and not os.path.exists(f"/proc/{proc.pid}")
    assert launcher.signal_group(proc.pid, signal.SIGTERM) is False


def test_a_cgroup_the_app_cannot_join_fails_the_start_and_names_it(tmp_path):
    launcher = Launcher()
    log_dir = tmp_path / "logs"
    proc = launcher.spawn([sys.executable, "-c", "print('never')"], {"PATH": "/usr/bin:/bin"}, str(tmp_path),
                          str(log_dir), cgroups=[str(tmp_path / "no-such-cgroup" / "cgroup.procs")])
    wait_until("exit", lambda: launcher.reap(proc) is not None)
    assert proc.returncode == 127
    assert texts(log_dir) == [("sys", f"run 1 could not start {sys.executable!r}: joining cgroup "
                                      f"{tmp_path / 'no-such-cgroup'}: No such file or directory")]


def test_the_whole_instance_runs_as_a_uid_without_a_passwd_name():
    need_root("changing user needs root")
    import pwd
    import shutil
    import tempfile
    taken = {e.pw_uid for e in pwd.getpwall()} | {e.pw_gid for e in pwd.getpwall()}
    uid = next(u for u in range(54321, 64000) if u not in taken)
    root = tempfile.mkdtemp(prefix="corral-nameless-")  # pytest's tmp folder is root's alone (0700)
    try:
        os.chmod(root, 0o755)
        launcher = Launcher()
        log_dir = pathlib.Path(root) / "logs"
        proc = launcher.spawn(["/bin/sh", "-c", "id -u; id -g; echo $USER"], {"PATH": "/usr/bin:/bin", "USER": str(uid)},
                              "/", str(log_dir), uid=uid, gid=uid)
        wait_until("exit", lambda: launcher.reap(proc) is not None)
        assert proc.returncode == 0, texts(log_dir)
        assert [t for s, t in texts(log_dir) if s == "out"] == [str(uid)] * 3
        assert (log_dir / "output.log").stat().st_uid == uid, "the capture process wrote it after dropping to the uid"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def hub_polled(launcher, watch):
    """Return once the hub has polled every pidfd watched so far: a process killed now rings its own
    watch only after such a poll (proof that time passed for the watch, where a sleep proves nothing)."""
    import subprocess

    from nodeagent.wakeup import Wakeup
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    bell = Wakeup()
    watch.add(bell, canary, launcher.exit_fd(canary))
    canary.kill()
    assert bell.wait(5), "the canary's watch did not ring"
    watch.remove(bell)
    canary.wait()


def test_the_exit_watch_wakes_on_a_pidfd_at_once_and_a_removed_watch_stays_silent(tmp_path):
    import eventlet
    import subprocess

    from nodeagent.instance import ExitWatch
    from nodeagent.wakeup import Wakeup
    launcher, watch = Launcher(), ExitWatch(interval=60)   # a poll would come far too late to pass
    ends = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stays = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        woken, removed = Wakeup(), Wakeup()
        fd = launcher.exit_fd(ends)
        assert fd is not None, "this kernel gives pidfds (Linux 5.3+)"
        watch.add(woken, ends, fd)
        watch.add(removed, stays, launcher.exit_fd(stays))
        hub_polled(launcher, watch)
        assert not woken.wait(0), "a live process's watch rang"
        ends.kill()
        assert woken.wait(5), "only the pidfd can wake it this soon: the watch polls every 60 s"
        watch.remove(removed)
        stays.kill()
        stays.wait()
        hub_polled(launcher, watch)
        assert not removed.wait(0), "a removed watch must not ring"
        watch.remove(woken)
        eventlet.sleep(0)
        assert watch._waits == {} and watch._thread is None
        # A process that exited before it was added rings at once; one without a pidfd is polled.
        gone, late = Wakeup(), Wakeup()
        watch.add(gone, ends, launcher.exit_fd(ends))   # exited, not yet reaped: its pidfd is readable
        assert gone.wait(1.0)
        watch.remove(gone)
    finally:
        for p in (ends, stays):
            p.kill()
            p.wait()
    assert launcher.exit_fd(ends) is None   # reaped: no such process
    watch.add(late, ends, None)             # no pidfd: polled (interval 60 s, so not rung yet)
    assert watch._thread is not None and not late.wait(0.05)
    watch.remove(late)
