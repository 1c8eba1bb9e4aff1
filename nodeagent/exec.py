"""``corral exec`` on the node: a command in an instance's environment, on a pty or on pipes.

The command gets what the instance's own process gets: the environment built
by :func:`nodeagent.environ.instance_env` (spec env, ``PORT``, ``CORRAL_*``,
the virtualenv first on ``PATH``, ``USER``/``HOME`` of its user), the app's
code as working directory, and the instance's identity as the agent knows it
(:attr:`Instance.identity`, the app's user: never read from ``/proc``, which
a process that just exited no longer answers): no supplementary groups,
``no_new_privs``, the instance's cgroup when it has one
(:func:`nodeagent.identity.for_instance`). When apps have users of their own
and the instance's is not known (a process adopted by an agent that has not
read its spec again yet), the session is refused: it never runs as the agent.

With ``tty`` it runs in a new session on a fresh pty (the pty is its
controlling terminal, so Ctrl-C typed by the user reaches it as SIGINT, and a
window size change as SIGWINCH); otherwise stdin, stdout and stderr are pipes.
Output is read only while the stream's credit window has room, so a slow
reader makes the command block on write instead of the agent buffering.
When the stream closes before the command ends (the user went away), the
command's process group gets SIGHUP, then SIGKILL after :data:`HANGUP_GRACE`.
"""
import base64
import fcntl
import logging
import os
import pty
import signal
import struct
import subprocess
import termios

import eventlet

from nodeagent import environ, identity
from nodeagent.fdio import close_fd as _close, read_some, write_all

log = logging.getLogger(__name__)

READ_BYTES = 32 * 1024   # output per exec_output message, at most
HANGUP_GRACE = 2.0       # seconds between SIGHUP and SIGKILL when the stream closes early


class ExecError(Exception):
    """A command that cannot be run in the instance; the message is one sentence."""


def exec_context(inst, *, images_dir, node):
    """``(env, cwd)`` of instance ``inst`` (an :class:`nodeagent.instance.Instance`): what its
    own process was given. ExecError when it has no running process or no image yet."""
    if inst.alive_pid() is None:
        raise ExecError(f"instance {inst.id} is {inst.state.value}, with no running process to exec beside")
    env, cwd = inst.process_context(images_dir)
    if not os.path.isdir(cwd):
        raise ExecError(f"instance {inst.id} has no image on node {node} yet")
    return env, cwd


def resolve_program(argv, env, cwd):
    """``argv`` with its program found as the instance would find it: on the instance's
    PATH, or relative to its code when it names a path. ExecError when not found."""
    program = argv[0]
    found = environ.find_program(program, env, cwd)
    if found is None:
        raise ExecError(f"command {program!r} was not found in the instance (PATH {env.get('PATH')})")
    return [found] + list(argv[1:])


def exit_status(returncode):
    """The shell's exit status of a ``Popen.returncode``: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def set_winsize(fd, rows, cols):
    """Set the window size of the terminal on ``fd``."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_tty():  # runs in the child, after setsid(): stdin is the pty
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn(argv, env, cwd, *, tty, run_as, rows=24, cols=80):
    """Start the command as ``run_as`` (:class:`nodeagent.identity.RunAs`) in a session of its own;
    returns ``(proc, fds)`` where ``fds`` maps ``"in"``, ``"out"`` and (pipes only) ``"err"`` to
    this end's file descriptors (non-blocking). Raises OSError."""
    if tty:
        master, slave = pty.openpty()
        try:
            set_winsize(slave, rows, cols)
            proc = identity.start(argv, run_as, then=_take_controlling_tty, env=env, cwd=cwd,
                                  stdin=slave, stdout=slave, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return proc, {"in": master, "out": master}
    proc = identity.start(argv, run_as, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    fds = {"in": os.dup(proc.stdin.fileno()), "out": os.dup(proc.stdout.fileno()), "err": os.dup(proc.stderr.fileno())}
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()
    for fd in fds.values():
        os.set_blocking(fd, False)
    return proc, fds


class ExecRun:
    """One command of one stream: pumps output out under the window, input in, and ends the stream
    with the exit status."""

    def __init__(self, channel, proc, fds, tty):
        self.channel = channel
        self.proc = proc
        self.fds = fds
        self.tty = tty
        channel.on_resize = self.on_resize
        channel.on_close = self.hang_up
        if channel.size is not None:  # asked for before the command started
            self.on_resize(*channel.size)

    def on_resize(self, rows, cols):
        """Pass a window size change to the pty (the kernel sends SIGWINCH)."""
        if self.tty:
            try:
                set_winsize(self.fds["in"], rows, cols)
            except OSError:
                pass

    def hang_up(self):
        """The stream closed early: SIGHUP the command's group, SIGKILL it after the grace."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGHUP)
            eventlet.spawn_after(HANGUP_GRACE, _signal_group, self.proc.pid, signal.SIGKILL)

    def _pump_input(self):
        fd = self.fds["in"]
        while True:
            seq, data, eof = self.channel.inputs.get()
            ok = not data or write_all(fd, data)
            self.channel.emit_credit(seq)
            if eof and not self.tty:
                _close(fd)
                self.fds.pop("in", None)
                return
            if not ok:
                return

    def _pump_output(self, name):
        fd = self.fds[name]
        while True:
            data = read_some(fd, READ_BYTES)
            if not data:
                return
            if not self.channel.emit("exec_output", {"fd": name, "data": base64.b64encode(data).decode("ascii")}):
                return

    def run(self):
        """Pump until the command's output ends, then end the stream with its exit status."""
        writer = eventlet.spawn(self._pump_input)
        readers = [eventlet.spawn(self._pump_output, name) for name in ("out", "err") if name in self.fds]
        try:
            for r in readers:
                r.wait()
            code = self.proc.wait()
        finally:
            writer.kill()
            for fd in set(self.fds.values()):
                try:
                    _close(fd)
                except OSError:
                    pass
            self.fds = {}
        if not self.channel.closed:
            self.channel.end(f"exited with code {exit_status(code)}", exit_code=exit_status(code))


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_exec(channel, agent, body):
    """Serve one ``exec_open``: find the instance, start the command in its environment, pump it."""
    iid = body["instance"]
    inst = agent.instances.get(iid)
    if inst is None:
        channel.end(f"instance {iid} is not on node {agent.name}", error=True)
        return
    try:
        env, cwd = exec_context(inst, images_dir=agent.images.images_dir, node=agent.name)
        argv = resolve_program(body["argv"], env, cwd)
        run_as = identity.for_instance(inst, getattr(agent, "users", None))
        proc, fds = spawn(argv, env, cwd, tty=body["tty"], run_as=run_as, rows=body.get("rows", 24),
                          cols=body.get("cols", 80))
    except identity.IdentityUnknown as e:
        channel.end(f"exec refused: {e}", error=True)
        return
    except ExecError as e:
        channel.end(str(e), error=True)
        return
    except OSError as e:
        channel.end(f"command {body['argv'][0]!r} could not be started in instance {iid}: {e.strerror or e}",
                    error=True)
        return
    log.info("exec in instance %s: %s (pid %d)", iid, " ".join(body["argv"])[:200], proc.pid)
    ExecRun(channel, proc, fds, body["tty"]).run()
