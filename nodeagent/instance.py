"""One assigned instance, and the green worker that drives it through its lifecycle.

The decisions are :func:`nodeagent.lifecycle.step` (pure: states,
transitions, restart policy and backoff). The worker here does the I/O: it
fetches the image, spawns or adopts through the :class:`nodeagent.process.Launcher`
seam, watches the process and its health check, signals and reaps, feeds
each thing it saw to ``step`` as an event and carries out the action it
returns:

    fetch image --Fetching / ImageFailed (RETRY)--> prepare --CannotRun (IDLE)-->
    adopt or spawn --Adopted / Spawned--> watch --Checked--> ... --Exited (RESTART: BackoffOver,
    spawn again | IDLE)--> wait for a stop --StopRequested--> drain, SIGTERM, grace, SIGKILL --Stopped

A liveness failure (the check failed ``failures`` times in a row while
running) stops the group and counts as an exit with its reason.

"Ready" is: the health check passed (:mod:`nodeagent.health`); without a
check, the port accepts a connection; without a port, started.

The worker is the only writer of an instance's status; the agent only reads
it (:meth:`Instance.report`, :meth:`Instance.view`) and calls
:meth:`Instance.request_stop`. Every change calls ``on_change`` so that a
report goes out at once.
"""
import logging
import os
import signal
import socket
import time

import eventlet
import eventlet.hubs

from corral import image_layout
from nodeagent import cgroups, environ, fdio, health, identity, lifecycle, restart
from nodeagent.diff import InstanceView
from nodeagent.pull import ImageError
from nodeagent.lifecycle import Action, State, Status
from nodeagent.process import EXIT_UNKNOWN, Capture
from nodeagent.prober import Job, Prober
from nodeagent.users import UserError
from nodeagent.wakeup import Wakeup

log = logging.getLogger(__name__)

TICK = 0.1            # seconds between polls of a starting process, a port or the stop flag
WATCH = 0.5           # seconds between looks of the ExitWatch at processes it has no pidfd of
READY_PROBE = 0.25    # seconds a readiness connect may take
KILL_WAIT = 10.0      # seconds to wait for a group to vanish after SIGKILL


def venv_base(venv):
    """The prefix of the interpreter a virtualenv was made from (the folder above ``home`` in its
    ``pyvenv.cfg``), or None when it does not say."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "home" and value.strip():
                    return os.path.dirname(value.strip().rstrip("/"))
    except OSError:
        pass
    return None


class ExitWatch:
    """Wakes the worker of a watched process once that process has exited.

    A process given with a pidfd (:meth:`nodeagent.process.Launcher.exit_fd`)
    is waited on in the hub: its worker is woken the moment it exits, and
    nothing runs while it lives. The others (no pidfd from this kernel, or a
    stand-in process in tests) are looked at by one green thread each
    ``interval`` seconds, which runs only while there are any. Either way a
    ready instance's worker sleeps until its next health check (or, without
    a check, until woken) instead of polling its own process.
    """

    def __init__(self, interval=WATCH):
        self.interval = interval
        self._watched = {}   # worker's Wakeup -> the process it supervises (polled)
        self._waits = {}     # worker's Wakeup -> (green thread waiting on the pidfd, the pidfd)
        self._thread = None

    def add(self, wake, proc, fd=None):
        """Ring ``wake`` once ``proc`` has exited (``proc.poll()`` is not None); ``fd``, a
        pidfd of it, is then the watch's to close."""
        if fd is not None:
            self._waits[wake] = (eventlet.spawn(self._wait_fd, wake, proc, fd), fd)
            return
        self._watched[wake] = proc
        if self._thread is None:
            self._thread = eventlet.spawn(self._run)

    def remove(self, wake):
        """Stop watching for ``wake`` (idempotent)."""
        self._watched.pop(wake, None)
        waiting = self._waits.pop(wake, None)
        if waiting is not None:
            thread, fd = waiting
            thread.kill()   # out of the hub's wait on fd before fd closes
            fdio.close_fd(fd)

    def _wait_fd(self, wake, proc, fd):
        try:
            if proc.poll() is None:   # opened on this very process: see Launcher.exit_fd
                eventlet.hubs.trampoline(fd, read=True)
        except Exception:
            log.exception("waiting for process %s failed; its worker looks itself", proc.pid)
        wake.ring()

    def _run(self):
        try:
            while self._watched:
                eventlet.sleep(self.interval)
                for wake, proc in list(self._watched.items()):
                    try:
                        ended = proc.poll() is not None
                    except Exception:
                        log.exception("looking at process %s failed; its worker looks itself", proc.pid)
                        ended = True
                    if ended:
                        self._watched.pop(wake, None)
                        wake.ring()
        finally:
            self._thread = None


class Instance:
    """One instance of an assignment on this node, with the worker that runs it.

    ``record`` is what a previous agent saved of it (:meth:`persisted`): when
    given, the worker first tries to adopt the process it names. ``users``
    says who it runs as (:class:`nodeagent.users.AppUsers` or
    :class:`nodeagent.users.OwnUser`); ``memory`` (a
    :class:`nodeagent.cgroupfs.MemoryCgroups`, or None) makes its memory
    request a hard limit. ``exits`` is the :class:`ExitWatch` that wakes its
    worker when its process exits, ``prober`` the :class:`nodeagent.prober.Prober` that runs its
    health checks (the agent shares one of each among its instances).
    """

    def __init__(self, assignment, *, node, address, data_dir, image_cache, launcher, ports,
                 base_env, on_change, users, memory=None, clock=time.time, backoff=restart.Backoff(),
                 capture=Capture(), record=None, exits=None, prober=None, metrics=None):
        self.assignment = assignment
        self.id = assignment["id"]
        self.spec = assignment["spec"]
        self.check = health.check_from_spec(self.spec.get("health"))
        self.node = node
        self.address = address
        self.data_dir = data_dir
        self.image_cache = image_cache
        self.launcher = launcher
        self.ports = ports
        self.base_env = base_env
        self.on_change = on_change
        self.clock = clock
        self.backoff = backoff
        self.capture = capture
        self.record = record
        self.users = users
        self.memory = memory
        self.memory_limit = 0     # bytes, from the spec's memory request (_prepare)
        self.identity = None      # who its processes run as (nodeagent.users.Identity), once known
        self.keep = ((), ())      # the folders its namespace keeps of what the node hides: (read-only, read-write)
        self.status = Status()
        self.proc = None
        self.ticks = None
        self.port = None
        self.stop_requested = False
        self.drain = True   # set by request_stop: whether the stop waits the drain period first
        self._wake = Wakeup()
        self._thread = None
        self.exits = exits or ExitWatch()
        self.prober = prober or Prober(clock)
        self.metrics = metrics
        if record is not None:
            self.port = record.get("port")
            self.status = Status(restarts=record.get("restarts", 0), failures=record.get("failures", 0),
                                 started_at=record.get("started_at"), exit_code=record.get("exit_code"))

    # -- the status, read-only ------------------------------------------------

    state = property(lambda self: self.status.state, doc="The lifecycle state (:class:`State`).")
    ready = property(lambda self: self.status.ready, doc="Whether it passes its readiness check.")
    message = property(lambda self: self.status.message, doc="Why it is in its state, for people.")
    finished = property(lambda self: self.status.finished, doc="Whether it ended for good under its policy.")
    restarts = property(lambda self: self.status.restarts, doc="Restarts so far.")
    exit_code = property(lambda self: self.status.exit_code, doc="The last run's exit code.")

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

    def alive_pid(self):
        """The pid of the instance's leader while it runs, else None."""
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def report(self):
        """This instance as an item of a ``report`` message."""
        a = self.assignment
        code = None if self.exit_code == EXIT_UNKNOWN else self.exit_code
        st = self.status
        return {
            "id": self.id, "app": a["app"], "process": a["process"], "state": st.state.value,
            "ready": st.ready, "pid": self.alive_pid(),
            "port": self.port, "address": self.address, "revision": a["revision"], "image": a["image"],
            "restarts": st.restarts, "started_at": st.started_at, "exit_code": code,
            "backoff_until": st.backoff_until, "message": st.message,
        }

    def persisted(self):
        """What the instance table on disk keeps of it, for a restarted agent to adopt it."""
        pid, st = self.alive_pid(), self.status
        return {"assignment": self.assignment, "pid": pid, "ticks": self.ticks if pid else None,
                "port": self.port, "restarts": st.restarts, "failures": st.failures,
                "started_at": st.started_at, "exit_code": st.exit_code, "finished": st.finished,
                "message": st.message if st.finished else None}

    # -- commands (the agent) -------------------------------------------------

    def start(self):
        """Start the worker green thread."""
        self._thread = eventlet.spawn(self._work)

    def request_stop(self, drain=True):
        """Ask the worker to drain and stop, or without ``drain`` to stop at once: SIGTERM, grace,
        SIGKILL (an instance replaced while its node was lost). Idempotent; returns at once."""
        if not self.stop_requested:
            self.stop_requested = True
            self.drain = drain
            self._wake.ring()

    def wait(self):
        """Block (green) until the worker has stopped the instance."""
        if self._thread is not None:
            self._thread.wait()

    def abandon(self):
        """End the worker and leave the process running (the agent is exiting to be restarted)."""
        if self._thread is not None:
            self._thread.kill()

    # -- the worker -----------------------------------------------------------

    def _apply(self, event):
        """Take one step of the lifecycle (:func:`nodeagent.lifecycle.step`); report when the status changed."""
        decision = lifecycle.step(self.status, event, now=self.clock(), policy=self.spec["restart"],
                                  retries=self.spec.get("retries"), backoff=self.backoff)
        if decision.status != self.status:
            self.status = decision.status
            self.on_change()
        return decision

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
            if self.port is not None:
                self.ports.reserve(self.port)
            elif self.spec["port"]:
                self.port = self.ports.allocate()
            self._live()
        except Exception as e:  # a fault in the agent must show, not vanish with the thread
            log.exception("instance %s: worker failed", self.id)
            self._apply(lifecycle.Crashed(f"agent error: {e.__class__.__name__}: {e}"))
        while not self.stop_requested:
            self._wake.wait(None)
        self._stop()

    def _fetch_image(self):
        """The image folder, retried with backoff while it fails; None when a stop came first."""
        a = self.assignment
        while not self.stop_requested:
            self._apply(lifecycle.Fetching())
            try:
                return self.image_cache.ensure(a["image"], a["artifact"])
            except ImageError as e:
                if self._pause(self._apply(lifecycle.ImageFailed(str(e))).delay):
                    return None
        return None

    def _live(self):
        """Run the instance until a stop is requested or it ends for good (returns then)."""
        record, self.record, adopted = self.record, None, None
        if record is not None and record.get("pid") and not record.get("finished"):
            # Found before anything else: from here on a stop (even one asked while the image is checked,
            # before the process is watched again) stops it, instead of leaving it running unowned.
            adopted = self.launcher.adopt(record["pid"], record.get("ticks"))
            if adopted is not None:
                self.proc, self.ticks = adopted, adopted.ticks
        image_path = self._fetch_image()
        if image_path is None:
            return
        try:
            argv, env, cwd = self._prepare(image_path)
        except (environ.CommandError, UserError) as e:
            self._apply(lifecycle.CannotRun(str(e)))
            return
        if record is not None and record.get("finished"):
            self._apply(lifecycle.AlreadyFinished(record.get("message")))
            return
        # ended while no agent watched: an exit of unknown status, handled per its policy
        if record is not None and record.get("pid") and adopted is None and not self._after_exit(EXIT_UNKNOWN, None):
            return
        while not self.stop_requested:
            if adopted is not None:
                self.proc, self.ticks, adopted = adopted, adopted.ticks, None
                self._apply(lifecycle.Adopted())
            else:
                try:
                    self.proc = self._spawn(argv, env, cwd)
                except OSError as e:
                    self._release_cgroup()
                    self._apply(lifecycle.CannotRun(f"command {argv[0]!r} could not be started ({e.strerror or e})"))
                    return
                self.ticks = self.launcher.start_ticks(self.proc.pid)
                self._apply(lifecycle.Spawned())
            code, why = self._supervise(self.status.started_at, env, cwd)
            if code is None:
                return  # stop requested while it runs
            if not self._after_exit(code, why):
                return

    def _spawn(self, argv, env, cwd):
        """Start a run: its cgroups first (the memory limit when it has a request, ``pids.max`` always,
        where enforced), then the process, as the instance's own user when apps have users of their own."""
        procs = self.memory.create_all(self.id, self.memory_limit) if self.memory is not None else []
        ident = self.identity if self.users.separate else None
        return self.launcher.spawn(argv, env, cwd, self.log_dir(), self.capture,
                                   uid=ident.uid if ident else None, gid=ident.gid if ident else None,
                                   cgroups=procs, keep=self.keep)

    def _release_cgroup(self):
        """Delete the run's cgroups once its processes are gone; True when the kernel OOM-killed in
        its memory cgroup."""
        if self.memory is None:
            return False
        killed = bool(self.memory_limit) and self.memory.oom_kills(self.id) > 0
        self.memory.remove(self.id)
        return killed

    def _after_exit(self, code, why):
        """After an exit: clear what is left of the run, then restart (True, after the backoff) or done (False)."""
        self._kill_leftovers()
        oom_killed = self._release_cgroup()
        decision = self._apply(lifecycle.Exited(code, why, self.memory_limit if oom_killed else 0))
        if decision.action != Action.RESTART:
            return False
        if self.metrics is not None:
            self.metrics.restarted(why, oom_killed)
        if self._pause(decision.delay):
            return False
        self._apply(lifecycle.BackoffOver())
        return True

    def _prepare(self, image_path):
        """argv, env and cwd of the instance's runs, and who runs them (``identity``).

        Raises CommandError or UserError (one sentence) when it cannot run."""
        a = self.assignment
        try:
            self.memory_limit = cgroups.request_bytes(self.spec.get("resources"))
        except ValueError as e:
            raise environ.CommandError(str(e)) from None
        self.identity = self.users.identity(a["app"])
        images_dir = os.path.dirname(image_path)
        env, cwd = self.process_context(images_dir)
        argv = environ.expand_command(self.spec["command"], env)
        found = environ.find_program(argv[0], env, cwd)
        if found is None:
            raise environ.CommandError(f"command {argv[0]!r} was not found on the instance PATH {env['PATH']}")
        venv = image_layout.venv_dir(images_dir, a["image"])
        self._check_reach(found, cwd, venv)
        # Only what the agent decides: the spec's env may name any HOME or PATH (the data dir, another
        # app's layer), which must stay hidden; a command outside the image is seen only where it lies
        # outside the hidden folders.
        self.keep = ([image_path, venv, cwd, venv_base(venv)], [self.identity.home] if self.identity else [])
        return [found] + argv[1:], env, cwd

    def process_context(self, images_dir):
        """``(env, cwd)`` that every process of this instance is given (its runs and ``corral exec``):
        the agent's base env and its user's, the spec's env and the instance's own variables, its
        image's virtualenv first on PATH; its image's code folder."""
        a = self.assignment
        base = self.base_env if self.identity is None else {**self.base_env, **self.identity.env()}
        env = environ.instance_env(base, venv=image_layout.venv_dir(images_dir, a["image"]),
                                   spec_env=self.spec["env"], port=self.port, app=a["app"],
                                   process=a["process"], instance=self.id, node=self.node)
        return env, image_layout.code_dir(images_dir, a["image"])

    def _check_reach(self, command, cwd, venv):
        """Raise UserError (one sentence) when the app's user cannot reach its command, its code or
        the interpreter its image links to (a venv's ``bin/python`` may point into a private home)."""
        python = os.path.join(venv, "bin", "python")
        targets = [(cwd, "x"), (os.path.dirname(command), "x"), (command, "x")]
        blocked = self.users.unreachable(self.identity, targets)
        if blocked:
            raise UserError(f"user {self.identity.name} cannot reach {blocked}, on the way to the command "
                            f"{command} or the code {cwd}: other users need to pass it (chmod o+x) "
                            "or the agent must run with --no-app-users")
        if os.path.lexists(python):
            blocked = self.users.unreachable(self.identity, [(python, "x")])
            if blocked:
                raise UserError(f"user {self.identity.name} cannot reach {blocked}, on the way to the image's "
                                f"interpreter {os.path.realpath(python)}: build the image with a Python that "
                                "other users can run (outside a private home), or run the agent with "
                                "--no-app-users")

    def log_dir(self):
        """The folder of this instance's log files (the contract is in nodeagent/README.md)."""
        return os.path.join(self.data_dir, "logs", self.id)

    def _supervise(self, started, env, cwd):
        """Watch the process until it exits (its code and why), its health check asks for a
        restart (the code of the stop, the reason) or a stop is requested (None, None)."""
        self.exits.add(self._wake, self.proc, self.launcher.exit_fd(self.proc))
        try:
            return self._watch(started, env, cwd)
        finally:
            self.exits.remove(self._wake)

    def _watch(self, started, env, cwd):
        """The loop of :meth:`_supervise`. With a health check, the node's prober runs it and wakes
        this worker only for a new verdict (or the ExitWatch on an exit); without one, until ready
        it polls the port every TICK, then sleeps until woken."""
        job = self._health_job(started, env, cwd) if self.check else None
        try:
            while not self.stop_requested:
                code = self.launcher.reap(self.proc)
                if code is not None:
                    return code, None
                verdict = job.take() if job is not None else None
                if verdict is not None and verdict.restart:
                    log.warning("instance %s: %s", self.id, verdict.reason)
                    return self._stop_group(verdict.reason), verdict.reason
                if verdict is not None:
                    self._mark(verdict.ready, verdict.reason)
                elif job is None and not self.ready and (self.port is None or self._port_open()):
                    self._mark(True, None)
                self._wake.wait(None if job is not None or self.ready else TICK)
        finally:
            if job is not None:
                self.prober.remove(job)
        return None, None

    def _health_job(self, started, env, cwd):
        """This run's health check, given to the prober: due ``initialDelay`` after ``started``."""
        check, address, port = self.check, self.address, self.port

        def full():
            run_as = identity.for_check(self, self.users) if check.kind == "exec" else None
            return self.launcher.probe(check, address, port, env, cwd, run_as=run_as)

        return self.prober.add(Job(check, started + check.initial_delay, wake=self._wake.ring, full=full,
                                   quick=lambda: self.launcher.probe_now(check, address, port),
                                   observe=self.metrics.probed if self.metrics is not None else None))

    def _mark(self, ready, reason):
        """Report a readiness change at once (STARTING -> RUNNING on the first ready, and ready flips)."""
        self._apply(lifecycle.Checked(ready, reason))

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

    def _terminate_group(self):
        """SIGTERM the group, wait the grace period, SIGKILL; returns how it ended, as a message."""
        pgid = self.proc.pid
        message = "stopped"
        if self.launcher.terminate(self.proc, signal.SIGTERM) and not self._await_group_gone(self.spec["stopGracePeriod"]):
            self.launcher.signal_group(pgid, signal.SIGKILL)
            message = f"stopped with SIGKILL after the stop grace period of {self.spec['stopGracePeriod']:g}s"
            if not self._await_group_gone(KILL_WAIT):
                message = f"process group {pgid} survived SIGKILL for {KILL_WAIT:g}s"
                log.error("instance %s: %s", self.id, message)
        self.launcher.reap(self.proc)
        return message

    def _stop_group(self, why):
        """Stop the group for a restart (``why``); returns the leader's returncode."""
        log.info("instance %s: %s", self.id, self._terminate_group())
        return self.proc.returncode if self.proc.returncode is not None else -signal.SIGKILL

    def _stop(self):
        """Drain, SIGTERM the group, wait the grace period, SIGKILL; then STOPPED and the port freed."""
        serving = self.proc is not None and self.proc.poll() is None
        self._apply(lifecycle.StopRequested())
        if serving and self.drain and self.spec["drainPeriod"] > 0:
            eventlet.sleep(self.spec["drainPeriod"])
        message = self._terminate_group() if self.proc is not None else "stopped"
        self._release_cgroup()
        self.ports.release(self.port)
        self._apply(lifecycle.Stopped(self.proc.returncode if self.proc is not None else None, message))
