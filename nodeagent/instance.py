"""One assigned instance: its explicit state, and the green worker that drives it.

States and transitions (each one labelled where it happens in the code):

    PENDING  --image ready, spawned-->  STARTING  --ready-->  RUNNING
    PENDING  --image error-->  FAILED  --retry delay-->  PENDING
    STARTING/RUNNING  --exit, restart-->  BACKOFF  --delay-->  STARTING
    STARTING/RUNNING  --exit, no restart-->  STOPPED (code 0) | FAILED
    any  --stop requested-->  STOPPING  --group gone-->  STOPPED (then forgotten)

The worker is the only writer of an instance's fields; the agent only reads
them (:meth:`Instance.report`, :meth:`Instance.view`) and calls
:meth:`Instance.request_stop`. Every change calls ``on_change`` so that a
report goes out at once.
"""
import enum
import logging
import os
import shutil
import signal
import socket
import time

import eventlet
import eventlet.queue

from corral import images as image_layout
from nodeagent import environ, restart
from nodeagent.diff import InstanceView
from nodeagent.images import ImageError

log = logging.getLogger(__name__)

TICK = 0.1            # seconds between polls of a process, a port or the stop flag
READY_PROBE = 0.25    # seconds a readiness connect may take
KILL_WAIT = 10.0      # seconds to wait for a group to vanish after SIGKILL


class State(str, enum.Enum):
    """The states an instance reports (report.schema.json)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Wakeup:
    """A one-slot doorbell for green threads: ``ring`` coalesces, ``wait`` sleeps until rung or timeout."""

    def __init__(self):
        self._q = eventlet.queue.LightQueue(maxsize=1)

    def ring(self):
        """Wake the waiter (rings while one is pending collapse into one)."""
        try:
            self._q.put_nowait(True)
        except eventlet.queue.Full:
            pass

    def wait(self, timeout):
        """Sleep until rung or ``timeout`` seconds; True when rung."""
        try:
            self._q.get(timeout=timeout)
            return True
        except eventlet.queue.Empty:
            return False


class Instance:
    """One instance of an assignment on this node, with the worker that runs it."""

    def __init__(self, assignment, *, node, address, data_dir, image_cache, launcher, ports,
                 base_env, on_change, clock=time.time):
        self.assignment = assignment
        self.id = assignment["id"]
        self.spec = assignment["spec"]
        self.node = node
        self.address = address
        self.data_dir = data_dir
        self.image_cache = image_cache
        self.launcher = launcher
        self.ports = ports
        self.base_env = base_env
        self.on_change = on_change
        self.clock = clock
        self.state = State.PENDING
        self.ready = False
        self.proc = None
        self.port = None
        self.restarts = 0
        self.started_at = None
        self.exit_code = None
        self.message = None
        self.stop_requested = False
        self._wake = Wakeup()
        self._thread = None

    # -- read side (the agent) ------------------------------------------------

    def view(self):
        """The :class:`InstanceView` the pure diff works on."""
        return InstanceView(id=self.id, stopping=self.stop_requested)

    @property
    def gone(self):
        """True once a requested stop finished: report it one last time, then forget it."""
        return self.stop_requested and self.state == State.STOPPED and self.dead()

    def dead(self):
        """True when the worker has finished."""
        return self._thread is not None and self._thread.dead

    def report(self):
        """This instance as an item of a ``report`` message."""
        a = self.assignment
        return {
            "id": self.id, "app": a["app"], "process": a["process"], "state": self.state.value,
            "ready": self.ready, "pid": self.proc.pid if self.proc is not None and self.proc.returncode is None else None,
            "port": self.port, "address": self.address, "revision": a["revision"], "image": a["image"],
            "restarts": self.restarts, "started_at": self.started_at, "exit_code": self.exit_code,
            "message": self.message,
        }

    # -- commands (the agent) -------------------------------------------------

    def start(self):
        """Start the worker green thread."""
        self._thread = eventlet.spawn(self._work)

    def request_stop(self):
        """Ask the worker to drain and stop (idempotent; returns at once)."""
        if not self.stop_requested:
            self.stop_requested = True
            self._wake.ring()

    def wait(self):
        """Block (green) until the worker has stopped the instance."""
        if self._thread is not None:
            self._thread.wait()

    # -- the worker -----------------------------------------------------------

    def _set(self, state, **fields):
        self.state = state
        for k, v in fields.items():
            setattr(self, k, v)
        self.on_change()

    def _pause(self, seconds):
        """Sleep up to ``seconds``; returns early (True) when a stop is requested."""
        deadline = self.clock() + seconds
        while not self.stop_requested:
            left = deadline - self.clock()
            if left <= 0:
                return False
            self._wake.wait(left)
        return True

    def _work(self):
        try:
            if self.spec["port"]:
                self.port = self.ports.allocate()
            self._live()
        except Exception as e:  # a fault in the agent must show, not vanish with the thread
            log.exception("instance %s: worker failed", self.id)
            self._set(State.FAILED, ready=False, message=f"agent error: {e.__class__.__name__}: {e}")
        while not self.stop_requested:
            self._wake.wait(None)
        self._stop()

    def _live(self):
        """Run the instance until a stop is requested or it ends for good (returns then)."""
        a = self.assignment
        image_failures = 0
        while True:
            # PENDING: fetch the image
            self._set(State.PENDING, message="fetching image")
            try:
                image_path = self.image_cache.ensure(a["image"], a["artifact"]["url"], a["artifact"]["sha256"])
                break
            except ImageError as e:
                # PENDING -> FAILED, retried after a delay
                image_failures += 1
                self._set(State.FAILED, message=str(e))
                if self._pause(restart.restart_delay(image_failures)):
                    return
        if self.stop_requested:
            return
        failures = 0
        while not self.stop_requested:
            try:
                argv, env, cwd = self._prepare(image_path)
            except environ.CommandError as e:
                self._set(State.FAILED, message=str(e))  # PENDING -> FAILED
                return
            try:
                self.proc = self.launcher.spawn(argv, env, cwd, self._log_path())
            except OSError as e:
                self._set(State.FAILED, message=f"command {argv[0]!r} could not be started ({e.strerror or e})")
                return
            started = self.clock()
            # PENDING/BACKOFF -> STARTING (a restart keeps the last exit code on show)
            self._set(State.STARTING, ready=False, started_at=started,
                      message=f"last run: {restart.exit_message(self.exit_code)}" if self.restarts else None)
            code = self._until_ready()
            if code is None and not self.stop_requested:
                self._set(State.RUNNING, ready=True)  # STARTING -> RUNNING
                code = self._until_exit()
            if code is None:
                return  # stop requested while it runs
            self._kill_leftovers()
            failures = 1 if self.clock() - started >= restart.RESET_AFTER else failures + 1
            message = restart.exit_message(code)
            if not restart.should_restart(self.spec["restart"], code):
                # STARTING/RUNNING -> STOPPED | FAILED
                self._set(State.STOPPED if code == 0 else State.FAILED, ready=False, exit_code=code, message=message)
                return
            delay = restart.restart_delay(failures)
            # STARTING/RUNNING -> BACKOFF
            self._set(State.BACKOFF, ready=False, exit_code=code,
                      message=f"{message}; restarting in {delay:g}s")
            if self._pause(delay):
                return
            self.restarts += 1

    def _prepare(self, image_path):
        a = self.assignment
        env = environ.instance_env(
            self.base_env, venv=image_layout.venv_dir(os.path.dirname(image_path), a["image"]),
            spec_env=self.spec["env"], port=self.port, app=a["app"], process=a["process"],
            instance=self.id, node=self.node,
        )
        argv = environ.expand_command(self.spec["command"], env)
        cwd = image_layout.code_dir(os.path.dirname(image_path), a["image"])
        program = argv[0]
        if os.sep in program:
            candidate = os.path.join(cwd, program)
            found = candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
        else:
            found = shutil.which(program, path=env["PATH"])
        if found is None:
            raise environ.CommandError(f"command {program!r} was not found on the instance PATH {env['PATH']}")
        return [found] + argv[1:], env, cwd

    def _log_path(self):
        folder = os.path.join(self.data_dir, "logs")
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, f"{self.id}.log")

    def _until_ready(self):
        """Poll until ready (None), the process exits (its code) or a stop is requested (None)."""
        while not self.stop_requested:
            code = self.launcher.reap(self.proc)
            if code is not None:
                return code
            if self.port is None or self._port_open():
                return None
            self._wake.wait(TICK)
        return None

    def _until_exit(self):
        while not self.stop_requested:
            code = self.launcher.reap(self.proc)
            if code is not None:
                return code
            self._wake.wait(TICK)
        return None

    def _port_open(self):
        try:
            with socket.create_connection((self.address, self.port), timeout=READY_PROBE):
                return True
        except OSError:
            return False

    def _kill_leftovers(self):
        """After the leader exited: SIGKILL what is left of its group, so a restart starts clean."""
        if self.proc is not None and self.launcher.signal_group(self.proc.pid, signal.SIGKILL):
            self._await_group_gone(KILL_WAIT)

    def _await_group_gone(self, timeout):
        deadline = self.clock() + timeout
        while True:
            self.launcher.reap(self.proc)
            if not self.launcher.group_alive(self.proc.pid):
                return True
            if self.clock() >= deadline:
                return False
            eventlet.sleep(TICK / 2)

    def _stop(self):
        """Drain, SIGTERM the group, wait the grace period, SIGKILL; then STOPPED and the port freed."""
        serving = self.proc is not None and self.proc.poll() is None
        # any -> STOPPING
        self._set(State.STOPPING, ready=False, message="stopping")
        if serving and self.spec["drainPeriod"] > 0:
            eventlet.sleep(self.spec["drainPeriod"])
        message = "stopped"
        if self.proc is not None:
            pgid = self.proc.pid
            if self.launcher.signal_group(pgid, signal.SIGTERM) and not self._await_group_gone(self.spec["stopGracePeriod"]):
                self.launcher.signal_group(pgid, signal.SIGKILL)
                message = f"stopped with SIGKILL after the stop grace period of {self.spec['stopGracePeriod']:g}s"
                if not self._await_group_gone(KILL_WAIT):
                    message = f"process group {pgid} survived SIGKILL for {KILL_WAIT:g}s"
            self.launcher.reap(self.proc)
        self.ports.release(self.port)
        # STOPPING -> STOPPED
        self._set(State.STOPPED, exit_code=self.proc.returncode if self.proc is not None else self.exit_code,
                  message=message)
