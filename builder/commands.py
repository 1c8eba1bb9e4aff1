"""Running the build's commands (venv, pip): by argv, with a deadline, logged.

Each command runs in its own session so that it and its children can be
stopped together, and that session is killed whole when the command ends
(nothing it started keeps running); with a ``box`` (:mod:`builder.buildusers`)
it runs as the build's identity, with ``no_new_privs``, and every process of
that identity is killed after it. Its output is appended to the build log. The wait polls
so that a builder asked to stop does not sit out a long install.
Under eventlet (after ``corral.green.patch()``) the wait is green.
"""
import dataclasses
import os
import signal
import subprocess
import time
import warnings

from builder.failures import BuildAbandoned, BuildFailed

_POLL = 0.2
_KILL_GRACE = 5.0


@dataclasses.dataclass(frozen=True)
class Finished:
    """How a command ended: its exit status and the output it appended to the log."""

    returncode: int
    output: str
    timed_out: bool


def run_logged(argv, *, log_path, timeout, stopping=lambda: False, cwd=None, env=None, on_line=None, box=None):
    """Run ``argv`` to completion, appending its output (stdout and stderr) to ``log_path``.

    Returns Finished; a command still running after ``timeout`` seconds is
    killed (``timed_out`` true). Raises BuildAbandoned, after killing it,
    when ``stopping()`` becomes true. ``env`` replaces the environment when given.
    ``on_line(text)`` is told each line of output while the command runs (read back
    from the log at every poll). ``box``: who it runs as (:class:`builder.buildusers.Box`; None: the
    builder, as it is), whose ``env`` it gets unless ``env`` is given; BuildFailed when it cannot
    become that identity.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        start = log.tell()
        proc = _start(argv, log, cwd, env, box)
        began = time.monotonic()
        lines = _LineFollower(log_path, start, on_line)
        try:
            timed_out = _wait(proc, began + timeout, lines, stopping, argv)
        finally:
            _end_session(proc, box)
    lines.follow(final=True)
    with open(log_path, "ab") as log:
        end = log.tell()
        log.write(f"# exit status {proc.returncode} after {time.monotonic() - began:.2f}s\n".encode())
    with open(log_path, "rb") as log:
        log.seek(start)
        output = log.read(end - start).decode("utf-8", "replace")
    return Finished(returncode=proc.returncode, output=output, timed_out=timed_out)


def _wait(proc, deadline, lines, stopping, argv):
    """Wait for ``proc``, following its output; True when it was killed at ``deadline``. Raises
    BuildAbandoned, after killing it, when ``stopping()`` turns true."""
    while True:
        try:
            proc.wait(timeout=_POLL)
            return False
        except subprocess.TimeoutExpired:
            pass
        lines.follow()
        if stopping():
            _kill(proc)
            raise BuildAbandoned(f"stopped while running {argv[0]}")
        if time.monotonic() >= deadline:
            _kill(proc)
            return True


def _start(argv, log, cwd, env, box):
    """Start ``argv`` in a session of its own, as ``box`` says (the builder as it is when None)."""
    if box is None:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)
    box.before_command()
    try:
        with warnings.catch_warnings():  # eventlet warns of any fork; the child execs at once
            warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd, env=box.env if env is None else env, start_new_session=True,
                                    close_fds=True, preexec_fn=box.preexec)
    except Exception as exc:
        # a preexec_fn that raised: the SubprocessError of whichever copy of subprocess forked; or the
        # program that identity may not run (OSError)
        box.after_command()
        if exc.__class__.__name__ != "SubprocessError" and not isinstance(exc, OSError):
            raise
        who = f"build user {box.name}" if box.separate else "the builder's user with no_new_privs"
        why = f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else ""
        raise BuildFailed(f"could not run {argv[0]} as {who}{why}") from None


def _end_session(proc, box):
    """The command's session killed whole (a child it left behind goes too), and with a ``box``
    every process of its identity."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if box is not None:
        box.after_command()


class _LineFollower:
    """Hands the lines a command appends to its log, from ``start`` on, to ``on_line`` (None: nothing)."""

    def __init__(self, log_path, start, on_line):
        self.log_path, self.at, self.on_line, self.partial = log_path, start, on_line, b""

    def follow(self, final=False):
        if self.on_line is None:
            return
        with open(self.log_path, "rb") as log:
            log.seek(self.at)
            data = self.partial + log.read()
            self.at = log.tell()
        *done, self.partial = data.split(b"\n")
        if final and self.partial:
            done, self.partial = done + [self.partial], b""
        for line in done:
            self.on_line(line.decode("utf-8", "replace").rstrip("\r"))


def _kill(proc):
    """SIGTERM the command's process group, then SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
