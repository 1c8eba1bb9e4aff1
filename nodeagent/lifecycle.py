"""An instance's lifecycle as a pure state machine: given its status, what happened and when,
the next status and what the worker is to do next.

    PENDING  --Fetching-->  PENDING ("fetching image")
    PENDING  --ImageFailed-->  FAILED, retry after the backoff  --Fetching-->  PENDING
    PENDING  --CannotRun (bad command, no user, spawn error)-->  FAILED, until stopped
    PENDING  --AlreadyFinished (it ended for good before an agent restart)-->  STOPPED | FAILED
    PENDING/BACKOFF  --Spawned-->  STARTING      PENDING  --Adopted-->  STARTING
    STARTING  --Checked(ready)-->  RUNNING       RUNNING  --Checked-->  RUNNING, ready flips
    STARTING/RUNNING  --Exited, policy restarts-->  BACKOFF  --BackoffOver-->  BACKOFF (restarts + 1)
    STARTING/RUNNING  --Exited, policy done-->  STOPPED (code 0) | FAILED, finished
    any  --StopRequested-->  STOPPING  --Stopped-->  STOPPED
    any  --Crashed (a fault in the agent)-->  FAILED

:func:`step` is a purely computational function with no side-effects: time
comes in as ``now``, the restart policy and the :class:`nodeagent.restart.Backoff`
schedule as arguments. The worker (:mod:`nodeagent.instance`) does the
I/O through the :class:`nodeagent.process.Launcher` seam, feeds what it saw
back as events, and carries out the returned :class:`Action`.
"""
import dataclasses
import enum

from nodeagent import cgroups, restart


class State(str, enum.Enum):
    """The states an instance reports (report.schema.json)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Status:
    """What an instance reports and keeps across runs (the worker's only mutable state is which one is current)."""

    state: State = State.PENDING
    ready: bool = False
    restarts: int = 0
    failures: int = 0          # exits in a row without a good run (the backoff's count)
    image_failures: int = 0    # failed fetches in a row
    started_at: float = None
    exit_code: int = None
    backoff_until: float = None
    message: str = None
    finished: bool = False     # ended for good under its restart policy
    run_message: str = None    # the message of the current run while it is ready ("last run: ...")


# -- events: what the worker saw ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class Fetching:
    """The image is being fetched."""


@dataclasses.dataclass(frozen=True)
class ImageFailed:
    """The image could not be had; ``reason`` is one sentence."""

    reason: str


@dataclasses.dataclass(frozen=True)
class CannotRun:
    """The instance cannot run at all (command not found, no user, spawn failed)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class AlreadyFinished:
    """The table on disk says it had ended for good before the agent restarted."""

    message: str = None


@dataclasses.dataclass(frozen=True)
class Spawned:
    """A new run started."""


@dataclasses.dataclass(frozen=True)
class Adopted:
    """A process a previous agent started was found alive (same pid and start time)."""


@dataclasses.dataclass(frozen=True)
class Checked:
    """A readiness verdict: the health check (or the port) says ``ready``, else ``reason``."""

    ready: bool
    reason: str = None


@dataclasses.dataclass(frozen=True)
class Exited:
    """The run ended with ``code`` (:data:`nodeagent.process.EXIT_UNKNOWN` when unknown); ``why``
    when the agent ended it (liveness); ``oom_limit`` the limit in bytes when the kernel OOM-killed in it."""

    code: int
    why: str = None
    oom_limit: int = 0


@dataclasses.dataclass(frozen=True)
class BackoffOver:
    """The restart delay has passed."""


@dataclasses.dataclass(frozen=True)
class StopRequested:
    """The agent asked it to stop."""


@dataclasses.dataclass(frozen=True)
class Stopped:
    """Its process group is gone after a stop; ``code`` the leader's (None when none ran), ``message`` how."""

    code: int
    message: str


@dataclasses.dataclass(frozen=True)
class Crashed:
    """A fault in the agent's worker."""

    reason: str


# -- actions: what the worker is to do next -----------------------------------

class Action(str, enum.Enum):
    """What the worker does after a step."""

    CONTINUE = "continue"   # go on with the flow it is in
    RETRY = "retry"         # wait ``delay`` (stop ends the wait), then try again
    RESTART = "restart"     # wait ``delay`` (stop ends the wait), then BackoffOver and spawn
    IDLE = "idle"           # nothing more to do until a stop is requested


@dataclasses.dataclass(frozen=True)
class Decision:
    """The next status, the action and, for RETRY and RESTART, the ``delay`` in seconds."""

    status: Status
    action: Action = Action.CONTINUE
    delay: float = 0.0


def _with(status, **fields):
    return dataclasses.replace(status, **fields)


def step(status, event, *, now, policy, backoff, retries=None):
    """The :class:`Decision` after ``event`` for an instance in ``status`` (pure).

    ``policy`` is the spec's restart policy (always / on-failure / never),
    ``retries`` the most restarts it allows (None: no limit; a run's
    ``on-failure`` with ``retries: 2`` runs at most three times),
    ``backoff`` a :class:`nodeagent.restart.Backoff`. Worked example of a
    crash loop under the default schedule: exits in a row wait 1, 2, 4 ... s,
    up to 300 s; a run of 600 s or more starts the count over.
    """
    if isinstance(event, Fetching):
        # PENDING/FAILED -> PENDING
        return Decision(_with(status, state=State.PENDING, message="fetching image"))
    if isinstance(event, ImageFailed):
        # PENDING -> FAILED, retried after the backoff
        failures = status.image_failures + 1
        return Decision(_with(status, state=State.FAILED, message=event.reason, image_failures=failures),
                        Action.RETRY, backoff.delay(failures))
    if isinstance(event, CannotRun):
        # PENDING -> FAILED, until stopped
        return Decision(_with(status, state=State.FAILED, ready=False, message=event.reason), Action.IDLE)
    if isinstance(event, AlreadyFinished):
        # PENDING -> STOPPED | FAILED (it had ended for good before the agent restarted)
        state = State.STOPPED if status.exit_code == 0 else State.FAILED
        return Decision(_with(status, state=state, finished=True, message=event.message), Action.IDLE)
    if isinstance(event, Adopted):
        # PENDING -> STARTING (it keeps its pid; ready again once its check passes)
        return Decision(_with(status, state=State.STARTING, ready=False, started_at=status.started_at or now,
                              backoff_until=None, message="adopted after an agent restart", run_message=None))
    if isinstance(event, Spawned):
        # PENDING/BACKOFF -> STARTING (a restart keeps the last exit code on show)
        run_message = f"last run: {restart.exit_message(status.exit_code)}" if status.restarts else None
        return Decision(_with(status, state=State.STARTING, ready=False, started_at=now, backoff_until=None,
                              message=run_message, run_message=run_message))
    if isinstance(event, Checked):
        message = status.run_message if event.ready else event.reason
        if event.ready and status.state == State.STARTING:
            # STARTING -> RUNNING
            return Decision(_with(status, state=State.RUNNING, ready=True, message=message))
        if status.ready == event.ready and status.message == message:
            return Decision(status)  # STARTING/RUNNING -> the same, nothing changed (the common case)
        # STARTING/RUNNING -> the same, readiness or its reason changed
        return Decision(_with(status, ready=event.ready, message=message))
    if isinstance(event, Exited):
        return _exited(status, event, now, policy, backoff, retries)
    if isinstance(event, BackoffOver):
        # BACKOFF -> BACKOFF, one more restart (STARTING follows with Spawned)
        return Decision(_with(status, restarts=status.restarts + 1))
    if isinstance(event, StopRequested):
        # any -> STOPPING
        return Decision(_with(status, state=State.STOPPING, ready=False, backoff_until=None, message="stopping"))
    if isinstance(event, Stopped):
        # STOPPING -> STOPPED
        code = status.exit_code if event.code is None else event.code
        return Decision(_with(status, state=State.STOPPED, exit_code=code, message=event.message), Action.IDLE)
    if isinstance(event, Crashed):
        # any -> FAILED (a fault in the agent must show, not vanish with the worker)
        return Decision(_with(status, state=State.FAILED, ready=False, message=event.reason), Action.IDLE)
    raise TypeError(f"no transition for event {event!r}")


def _exited(status, event, now, policy, backoff, retries):
    started = status.started_at if status.started_at is not None else now
    failures = backoff.failures_after(status.failures, now - started)
    message = event.why or restart.exit_message(event.code)
    if event.oom_limit:
        message = cgroups.oom_message(event.oom_limit, message)
    again = restart.should_restart(policy, event.code)
    if again and retries is not None and status.restarts >= retries:
        again, message = False, f"{message}; no retry left (retries: {retries})"
    if not again:
        # STARTING/RUNNING -> STOPPED (code 0) | FAILED, for good
        state = State.STOPPED if event.code == 0 else State.FAILED
        return Decision(_with(status, state=state, ready=False, exit_code=event.code, message=message,
                              failures=failures, finished=True), Action.IDLE)
    delay = backoff.delay(failures)
    # STARTING/RUNNING -> BACKOFF
    return Decision(_with(status, state=State.BACKOFF, ready=False, exit_code=event.code, failures=failures,
                          backoff_until=now + delay, message=f"{message}; restarting in {delay:g}s"),
                    Action.RESTART, delay)
