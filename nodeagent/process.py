"""The process seam: every fork, signal and reap of an instance goes through :class:`Launcher`.

Later tests replace it with a fake that records calls. An instance runs in
its own session, so its process group id is its leader's pid and a signal to
the group reaches every process it started.

A process is known by its pid AND its start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot): a restarted agent re-adopts an
instance only when both match, so a recycled pid is never mistaken for it.
"""
import ctypes
import os
import subprocess

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

    def spawn(self, argv, env, cwd, log_path):
        """Start ``argv`` in a new session with output appended to ``log_path``; returns the Popen.

        Raises OSError when the program cannot be executed.
        """
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )

    def start_ticks(self, pid):
        """The start time of ``pid`` (see :func:`start_ticks`), to save beside the pid."""
        return start_ticks(pid)

    def adopt(self, pid, ticks):
        """An :class:`Adopted` handle on ``pid`` when it still runs with start time ``ticks``, else None."""
        if pid is None or ticks is None or start_ticks(pid) != ticks:
            return None
        return Adopted(pid, ticks)

    def probe(self, check, address, port, env, cwd):
        """Run health ``check`` once against an instance; ``(ok, detail)`` (see :mod:`nodeagent.probes`)."""
        return probes.probe(check, address, port, env, cwd)

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
