"""Health checks of an instance: what the spec asks, and what each result means (pure).

A check is one of ``http`` (GET of a path on the instance's port: 2xx or 3xx
is healthy), ``tcp`` (a connect to the port) or ``exec`` (a command that exits
0), run every ``interval`` seconds from ``initialDelay`` after the start, each
run given ``timeout`` seconds (:mod:`nodeagent.probes` runs them).

What a run's result decides (:meth:`Tracker.record`):

- before its first pass the instance is ``starting`` and not ready; failures
  then never restart it (a slow start is not a crash; its message says why it
  is not ready);
- the first pass makes it ready (STARTING -> RUNNING);
- while running, one failure makes it not ready at once (traffic leaves it)
  and ``failures`` in a row restart it (liveness); a pass in between makes it
  ready again and clears the count.

Worked example, failures 3: pass, fail, fail, pass, fail, fail, fail
-> ready, not ready, not ready, ready, not ready, not ready, restart.

The next run is due ``interval`` after the last one ended, moved to the
nearest multiple of :data:`CHECK_GRID` (:func:`next_check`): the checks of
hundreds of instances then fall due together and the agent wakes a few
times a second for all of them, not once per check.
"""
import dataclasses

CHECK_GRID = 0.05   # seconds: checks fall due on multiples of it (at most half of it early or late)


def next_check(now, interval, grid=CHECK_GRID):
    """When the next run of a check is due: ``interval`` after ``now``, on the nearest multiple
    of ``grid`` seconds, and never before ``now``."""
    return max(now, round((now + interval) / grid) * grid)


@dataclasses.dataclass(frozen=True)
class Check:
    """One instance's health check, with every default filled in (seconds)."""

    kind: str                 # "http" | "tcp" | "exec"
    target: object            # the http path, True for tcp, the exec argv
    interval: float = 5.0
    timeout: float = 2.0
    failures: int = 3
    initial_delay: float = 0.0


def check_from_spec(health):
    """The :class:`Check` of an assign's ``spec.health`` (None when the spec has none)."""
    if not health:
        return None
    for kind in ("http", "tcp", "exec"):
        if kind in health:
            return Check(kind=kind, target=health[kind], interval=float(health.get("interval", 5.0)),
                         timeout=float(health.get("timeout", 2.0)), failures=int(health.get("failures", 3)),
                         initial_delay=float(health.get("initialDelay", 0.0)))
    raise ValueError(f"health check {health!r} names none of http, tcp or exec")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one result means: is the instance ready, is it to be restarted, and why."""

    ready: bool
    restart: bool = False
    reason: str = None


class Tracker:
    """The running tally of one process's check results (one tracker per process started)."""

    def __init__(self, check):
        self.check = check
        self.passed_once = False
        self.failed_in_a_row = 0

    def record(self, ok, detail):
        """Take one result (``ok``, and ``detail`` saying what was seen) and return the :class:`Verdict`."""
        if ok:
            self.passed_once = True
            self.failed_in_a_row = 0
            return Verdict(ready=True)
        self.failed_in_a_row += 1
        if not self.passed_once:
            return Verdict(ready=False, reason=f"not ready: health check failed ({detail})")
        if self.failed_in_a_row >= self.check.failures:
            return Verdict(ready=False, restart=True,
                           reason=f"restarted: health check failed {self.failed_in_a_row} times in a row ({detail})")
        return Verdict(ready=False, reason=f"not ready: health check failed {self.failed_in_a_row} "
                                           f"of {self.check.failures} times ({detail})")
