"""The process seam: every fork, signal and reap of an instance goes through :class:`Launcher`.

Tests replace it with a fake that records calls. An instance runs in its
own session under its capture process (:mod:`nodeagent.logshim`), the
group's leader and the app's parent: its process group id is the leader's
pid, a signal to the group reaches every process the app started, and the
leader's exit status is the app's.

A process is known by its pid AND its start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot): a restarted agent re-adopts an
instance only when both match, so a recycled pid is never mistaken for it.
"""
import ctypes
import dataclasses
import os
import subprocess
import sys

from nodeagent import probes

PR_SET_CHILD_SUBREAPER = 36
EXIT_UNKNOWN = -256   # the returncode of an adopted process that ended: not our child, its status is lost


def start_ticks(pid, proc_root="/proc"):
    """The start time of live process ``pid`` (clock ticks since boot), or None when it is gone or a zombie."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@dataclasses.dataclass(frozen=True)
class Capture:
    """Where an instance's output goes and how it is rotated (settings ``log_max_bytes``, ``log_keep``)."""

    max_bytes: int = 10 * 1024 * 1024
    keep: int = 3

    @classmethod
    def from_timings(cls, timings):
        """The capture limits the settings ask for."""
        return cls(max_bytes=int(timings.log_max_bytes), keep=int(timings.log_keep))


def give_folder(folder, uid, gid):
    """Make ``folder`` and the files in it belong to ``uid``:``gid``."""
    for path in [folder] + [os.path.join(folder, n) for n in os.listdir(folder)]:
        try:
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(path, uid, gid)
        except FileNotFoundError:
            pass


def shim_argv(argv, log_dir, capture, uid=None, gid=None, cgroups=()):
    """The command line that runs ``argv`` under :mod:`nodeagent.logshim` (pure).

    ``-I``: the app's env (PYTHONPATH, ...) must not change which shim runs.
    """
    out = [sys.executable, "-I", "-m", "nodeagent.logshim", "--dir", log_dir,
           "--max-bytes", str(capture.max_bytes), "--keep", str(capture.keep)]
    if uid is not None:
        out += ["--uid", str(uid), "--gid", str(gid)]
    for procs in cgroups:
        out += ["--cgroup", procs]
    return out + ["--"] + list(argv)


class Adopted:
    """A process this agent did not start (it outlived the agent that did): the part of the
    ``Popen`` interface the instance worker uses. Its exit status cannot be collected;
    once it is gone ``returncode`` is :data:`EXIT_UNKNOWN`."""

    def __init__(self, pid, ticks):
        self.pid = pid
        self.ticks = ticks
        self.returncode = None

    def poll(self):
        """None while the same process (pid and start time) lives, else :data:`EXIT_UNKNOWN`."""
        if self.returncode is None and start_ticks(self.pid) != self.ticks:
            self.returncode = EXIT_UNKNOWN
        return self.returncode


class Launcher:
    """Starts instance processes and signals, probes and reaps their process groups."""

    def become_subreaper(self):
        """Make this process the reaper of orphaned descendants (Linux), so that an
        instance's children that outlive its leader are reaped here and never stay
        zombies. Returns whether it worked."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            return False

    def spawn(self, argv, env, cwd, log_dir, capture=Capture(), uid=None, gid=None, cgroups=()):
        """Start ``argv`` under its capture process in a new session, output to ``log_dir``; returns the
        Popen of the capture process (the group leader).

        Raises OSError when the capture process cannot be started. A capture
        process's own errors (never the app's output) go to ``log_dir/capture.err``.
        With ``uid``/``gid`` the folder and its files become that user's first: the
        capture process drops to it and keeps writing there.
        """
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, "capture.err"), "ab") as err:
            if uid is not None:
                give_folder(log_dir, uid, gid)
            return subprocess.Popen(
                shim_argv(argv, log_dir, capture, uid, gid, cgroups), env=env, cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, close_fds=True,
            )

    def start_ticks(self, pid):
        """The start time of ``pid`` (see :func:`start_ticks`), to save beside the pid."""
        return start_ticks(pid)

    def adopt(self, pid, ticks):
        """An :class:`Adopted` handle on ``pid`` when it still runs with start time ``ticks``, else None."""
        if pid is None or ticks is None or start_ticks(pid) != ticks:
            return None
        return Adopted(pid, ticks)

    def exit_fd(self, proc):
        """A pidfd of ``proc`` (readable once it has exited), or None when this kernel or
        process gives none (the caller then polls). The caller closes it.

        The fd names the process it was opened on: a pid reused after an exit is
        caught by the caller's ``proc.poll()`` after opening (an unreaped child
        keeps its pid; an adopted process is checked by its start time)."""
        try:
            return os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            return None

    def probe(self, check, address, port, env, cwd, run_as=None):
        """Run health ``check`` once against an instance; ``(ok, detail)``. An exec check runs as
        ``run_as`` (:class:`nodeagent.identity.RunAs`), and not at all without it (see :mod:`nodeagent.probes`)."""
        return probes.probe(check, address, port, env, cwd, run_as)

    def terminate(self, proc, sig):
        """Send ``sig`` to the instance's leader, which relays it to its group once; to the group
        itself when the leader is gone. False when nothing is left to signal."""
        try:
            os.kill(proc.pid, sig)
            return True
        except ProcessLookupError:
            return self.signal_group(proc.pid, sig)

    def signal_group(self, pgid, sig):
        """Send ``sig`` to the process group; False when the group is already gone."""
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False

    def group_alive(self, pgid):
        """Whether any process (zombies included) is left in the group."""
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def reap(self, proc):
        """Collect the leader's exit status if it ended (its returncode, or None while it
        runs), then every exited orphan of its group that was handed to this process."""
        code = proc.poll()
        if code is not None and not isinstance(proc, Adopted):
            while True:
                try:
                    pid, _ = os.waitpid(-proc.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
        return code
