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
import json
import os
import stat
import subprocess
import sys
import tempfile

from corral.exits import EXIT_UNKNOWN
from nodeagent import probes, sandbox
from nodeagent.procstat import start_ticks
from nodeagent.logshim import SHIM_ENV

PR_SET_CHILD_SUBREAPER = 36


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
    """Make ``folder`` and the regular files in it belong to ``uid``:``gid`` (files an earlier run
    made as another user). The folder is the app's: an entry is looked at through an ``O_PATH``
    fd opened without following it, and only a regular file with no other name (``st_nlink`` 1)
    is given; a symlink, a FIFO or a hard link the app planted there (to a file of root's) is left
    as it is, never followed or chowned."""
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(dir_fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(dir_fd, uid, gid)
        for name in os.listdir(dir_fd):
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (st.st_uid, st.st_gid) != (uid, gid):
                    os.chown(f"/proc/self/fd/{fd}", uid, gid)   # this very inode: the fd names it
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


def shim_argv(argv, log_dir, capture, uid=None, gid=None, cgroups=()):
    """The command line that runs ``argv`` under :mod:`nodeagent.logshim` (pure). The app's env and
    folder are not on it: they go on the capture process's stdin (:func:`spec_file`).

    ``-I``: nothing of the environment (PYTHONPATH, ...) may change which shim runs.
    """
    out = [sys.executable, "-I", "-m", "nodeagent.logshim", "--dir", log_dir,
           "--max-bytes", str(capture.max_bytes), "--keep", str(capture.keep)]
    if uid is not None:
        out += ["--uid", str(uid), "--gid", str(gid)]
    for procs in cgroups:
        out += ["--cgroup", procs]
    return out + ["--"] + list(argv)


def spec_file(env, cwd, steps=None):
    """An fd of an unlinked file (a memfd where the kernel has them) holding ``{"env", "cwd",
    "sandbox"}`` as JSON, at offset 0: the capture process's stdin. Nobody else can open it,
    nothing can swap it."""
    data = json.dumps({"env": dict(env), "cwd": cwd, "sandbox": steps}).encode("utf-8")
    try:
        fd = os.memfd_create("corral-app-env", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        fd = os.dup(tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None).fileno())
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


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


class Sandbox:
    """What the mount namespace of every instance on this node hides (:mod:`nodeagent.sandbox`):
    the agent's ``hide`` folders (its data and images), and the ``mask`` files outside them (the
    key's)."""

    def __init__(self, hide, mask=()):
        self.hide = [os.path.realpath(p) for p in hide]
        self.mask = [os.path.realpath(p) for p in mask if os.path.isfile(p)]

    def steps(self, keep_ro, keep_rw):
        """The steps of an instance's namespace that keeps the folders ``keep_ro`` (read-only) and
        ``keep_rw`` (its HOME, its log folder), each as its real path; missing ones are left out."""
        def real(paths):
            return [os.path.realpath(p) for p in paths if p and os.path.isdir(p)]
        return sandbox.plan(self.hide, real(keep_ro), real(keep_rw), self.mask)


class Launcher:
    """Starts instance processes and signals, probes and reaps their process groups; with a
    :class:`Sandbox`, an instance with a user of its own lives in a mount namespace of its own."""

    def __init__(self, sandbox=None, sandbox_refused="not asked for"):
        self.sandbox = sandbox
        self.sandbox_refused = None if sandbox is not None else sandbox_refused   # why there is none

    def become_subreaper(self):
        """Make this process the reaper of orphaned descendants (Linux), so that an
        instance's children that outlive its leader are reaped here and never stay
        zombies. Returns whether it worked."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            return False

    def spawn(self, argv, env, cwd, log_dir, capture=Capture(), uid=None, gid=None, cgroups=(), keep=((), ())):
        """Start ``argv`` under its capture process in a new session, output to ``log_dir``; returns the
        Popen of the capture process (the group leader).

        The capture process gets :data:`nodeagent.logshim.SHIM_ENV` and ``/`` as its own env and
        folder; ``env`` and ``cwd`` reach only the app, on its stdin (:func:`spec_file`). Raises
        OSError when it cannot be started. Its errors before it drops to the app's user go to
        the agent's stderr, after that to ``capture.err`` in the folder (opened by it, as that user).
        With ``uid``/``gid`` the folder and its files become that user's first (:func:`give_folder`),
        and, with a :class:`Sandbox`, the instance's namespace keeps ``keep`` (``(read-only folders,
        read-write folders)``) and ``log_dir``, read-write, of what the sandbox hides.
        """
        os.makedirs(log_dir, exist_ok=True)
        steps = None
        if uid is not None:
            give_folder(log_dir, uid, gid)
            if self.sandbox is not None:
                steps = self.sandbox.steps(keep[0], [*keep[1], log_dir])
        spec = spec_file(env, cwd, steps)
        try:
            return subprocess.Popen(
                shim_argv(argv, log_dir, capture, uid, gid, cgroups),
                env=dict(SHIM_ENV), cwd="/", stdin=spec, stdout=subprocess.DEVNULL,
                start_new_session=True, close_fds=True,
            )
        finally:
            os.close(spec)

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

    def probe_now(self, check, address, port):
        """``(ok, detail)`` of ``check`` when it needs no wait (a tcp connect on this host), else
        None: then :meth:`probe` runs it (see :mod:`nodeagent.prober`)."""
        return probes.probe_now(check, address, port)

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
