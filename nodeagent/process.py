"""The process seam: every fork, signal and reap of an instance goes through :class:`Launcher`.

Later tests replace it with a fake that records calls. An instance runs in
its own session, so its process group id is its leader's pid and a signal to
the group reaches every process it started.
"""
import ctypes
import os
import subprocess

PR_SET_CHILD_SUBREAPER = 36


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
        if code is not None:
            while True:
                try:
                    pid, _ = os.waitpid(-proc.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
        return code
