"""Scheduled processes and runs: what the leader decides at each pass. Pure.

A scheduled process has no instances of its own. At each *slot* of its
schedule (:func:`corral.schedule.slots`) the leader writes one run row
``(app, process, slot)``, unique in the store, in the same fenced transaction
that writes the run's desired instance; a run is that instance, with
``restart: never`` or ``on-failure``. Exactly once holds because every
reconciler counts slots the same way from the same *cursor*: the newest slot
that has a row (or, before the first, the time the app was last applied).

Per pass, for one scheduled process, :func:`due` decides:

- the slots between the cursor and ``now``; one later than its
  ``startingDeadline`` is skipped (a missed slot is started late if within
  it, else skipped with an event: never twice); with no deadline, at most
  :data:`CATCH_UP` of the newest are started and older ones skipped. The
  slots skipped as too late are one skip, of the newest of them (one row,
  one event, whatever the length of the outage);
- ``concurrency``: ``allow`` starts every due slot; ``forbid`` skips them all
  while a run is active, else starts only the newest; ``replace`` stops the
  active runs and starts the newest. Worked example, ``forbid``, slots at
  10:00 and 10:01 both due after a failover and no run active: 10:01 starts,
  10:00 is skipped ("a newer slot was due");
- runs that have run longer than ``activeDeadline`` are stopped.

:func:`run_state` reads an agent's report of a run's instance into the run's
state; :func:`prune` keeps ``history`` (the newest N succeeded and N failed
runs of each process, and always the newest slot: it is the cursor).
Nothing here reads a clock, the store or the bus.
"""
import dataclasses
import datetime
import math
from typing import Optional

from corral.schedule import Schedule, next_slot, parse, slots
from corral.spec.quantities import parse_duration

CATCH_UP = 100  # without a startingDeadline, the most missed slots started after an outage

ACTIVE = frozenset({"requested", "pending", "running"})
FINISHED = frozenset({"succeeded", "failed", "skipped"})
CONCURRENCY = ("allow", "forbid", "replace")

UTC = datetime.timezone.utc


@dataclasses.dataclass(frozen=True)
class CronSpec:
    """A process's schedule and run policies, as the spec says them (durations in seconds)."""

    schedule: Schedule
    timezone: str = "UTC"
    concurrency: str = "allow"
    starting_deadline: Optional[float] = None
    active_deadline: Optional[float] = None
    keep_succeeded: int = 3
    keep_failed: int = 1


@dataclasses.dataclass(frozen=True)
class Due:
    """One pass's decisions for one scheduled process.

    ``start``: slots (epoch seconds) to give a run now; ``skip``: ``(slot, reason)``
    to record as skipped, each at most once; ``stop``: ``(run id, reason)``.
    """

    start: tuple = ()
    skip: tuple = ()
    stop: tuple = ()


def cron_spec(process):
    """The :class:`CronSpec` of a process spec that has a ``schedule``, else None.
    A purely computational function."""
    if not process.get("schedule"):
        return None
    history = process.get("history") or {}
    start = process.get("startingDeadline")
    active = process.get("activeDeadline")
    return CronSpec(
        schedule=parse(process["schedule"]), timezone=process.get("timezone") or "UTC",
        concurrency=process.get("concurrency", "allow"),
        starting_deadline=parse_duration(start) if start is not None else None,
        active_deadline=parse_duration(active) if active is not None else None,
        keep_succeeded=int(history.get("succeeded", 3)), keep_failed=int(history.get("failed", 1)))


def cursor(runs, applied_at):
    """Where the count of slots starts for one process: its newest slot that has a run
    row, else ``applied_at`` (when the app was last applied). Pure."""
    slotted = [r.slot for r in runs if r.slot is not None]
    return max(slotted) if slotted else applied_at


def _stamp(t):
    return datetime.datetime.fromtimestamp(t, UTC)


def _text(slot):
    return _stamp(slot).strftime("%Y-%m-%d %H:%M:%S UTC")


def due_slots(cron, after, now):
    """The slots (whole epoch seconds) in ``(after, now]`` as ``(fresh, missed)``: ``fresh``
    may still start; ``missed`` are ``(count, newest)`` of those too late to (older than
    the ``startingDeadline``, or beyond the :data:`CATCH_UP` newest without one), or
    None. Counted lazily: an outage of a week of ``every 1s`` keeps no list. Pure."""
    edge = now - cron.starting_deadline if cron.starting_deadline is not None else None
    fresh, count, newest = [], 0, None
    step = cron.schedule.interval
    if step and edge is not None and edge > after:
        # every N: the too-late slots are counted, not listed (multiples of N below edge)
        newest = (math.ceil(edge) - 1) // step * step
        count = max(0, newest // step - int(after // step))
        after, newest = (max(after, newest), newest) if count else (after, None)
    for t in slots(cron.schedule, cron.timezone, _stamp(after), _stamp(now)):
        s = int(t.timestamp())
        if edge is not None and s < edge:
            count, newest = count + 1, s
            continue
        fresh.append(s)
        if edge is None and len(fresh) > CATCH_UP:
            count, newest = count + 1, fresh.pop(0)
    return fresh, ((count, newest) if count else None)


def _missed(cron, missed, now):
    """The one skip that stands for every slot too late to start: its newest slot, and why."""
    count, newest = missed
    what = f"slot {_text(newest)}" if count == 1 else f"{count} slots up to {_text(newest)}"
    if cron.starting_deadline is None:
        return newest, f"{what} skipped: more than {CATCH_UP} slots were due at once"
    return newest, (f"{what} missed by more than the startingDeadline of {cron.starting_deadline:g}s "
                    f"({now - newest:.0f}s late)")


def due(cron, runs, after, now):
    """The :class:`Due` of one scheduled process at ``now``: ``runs`` are its run rows
    (any kind), ``after`` its :func:`cursor`. A purely computational function."""
    fresh, missed = due_slots(cron, after, now)
    skip = [_missed(cron, missed, now)] if missed else []
    active = [r for r in runs if r.state in ACTIVE]
    stop = list(overdue(cron, runs, now))
    start = fresh
    if fresh and cron.concurrency in ("forbid", "replace"):
        start = fresh[-1:]
        skip += [(s, f"slot {_text(s)} skipped: the newer slot {_text(fresh[-1])} was due too "
                     f"(concurrency {cron.concurrency})") for s in fresh[:-1]]
    if start and cron.concurrency == "forbid" and active:
        skip.append((start[0], f"slot {_text(start[0])} skipped: run {active[0].id} is still active "
                               f"(concurrency forbid)"))
        start = []
    if start and cron.concurrency == "replace":
        stopping = {i for i, _ in stop}
        stop += [(r.id, f"replaced by the run of slot {_text(start[0])} (concurrency replace)")
                 for r in active if r.id not in stopping]
    return Due(start=tuple(start), skip=tuple(sorted(skip)), stop=tuple(stop))


def overdue(cron, runs, now):
    """``(run id, reason)`` of the running runs that have run longer than the
    ``activeDeadline`` (none without one). Pure."""
    limit = cron.active_deadline
    if limit is None:
        return ()
    return tuple((r.id, f"ran longer than its activeDeadline of {limit:g}s")
                 for r in runs if r.state == "running" and r.started_at is not None and now - r.started_at > limit)


def trigger(concurrency, runs, run_id):
    """What to do with a requested run of a scheduled process (``corral trigger``) under
    its ``concurrency``, given the process's other ``runs``: ``("start", stops)``, or
    ``("skip", reason)``. Pure."""
    active = [r for r in runs if r.state in ("pending", "running") and r.id != run_id]
    if concurrency == "forbid" and active:
        return "skip", f"run {active[0].id} is still active (concurrency forbid)"
    if concurrency == "replace":
        return "start", tuple((r.id, f"replaced by the triggered run {run_id} (concurrency replace)") for r in active)
    return "start", ()


def run_state(observed, node_lost):
    """``(state, exit code, message)`` of a started run from its instance's report
    (``observed``: a dict as agents report it, or None when unreported) and whether its
    node is lost. ``None`` when nothing is known yet or it changed nothing. Pure."""
    if node_lost:  # what its node last said no longer counts: nobody can vouch for it
        return "failed", None, "its node was lost; a run is never started twice"
    if observed is None:
        return None
    state, code = observed.get("state"), observed.get("exit_code")
    if state in ("starting", "running", "backoff", "stopping"):
        return "running", None, None
    if state == "stopped":
        return ("succeeded" if code == 0 else "failed"), code, observed.get("message")
    if state == "failed":  # finished, or cannot run (no image, no program): a run is not retried
        return "failed", code, observed.get("message")
    return None


def prune(runs, keep_succeeded, keep_failed):
    """Ids of finished runs beyond the history to keep: the newest ``keep_succeeded``
    succeeded and ``keep_failed`` failed or skipped runs of one process; the run of
    its newest slot always stays (it is the cursor). A purely computational function."""
    slotted = [r for r in runs if r.slot is not None]
    newest = max(slotted, key=lambda r: r.slot).id if slotted else None
    out = []
    for states, keep in ((("succeeded",), keep_succeeded), (("failed", "skipped"), keep_failed)):
        done = sorted((r for r in runs if r.state in states), key=lambda r: (r.created_at, r.id), reverse=True)
        out += [r.id for r in done[keep:] if r.id != newest]
    return sorted(out)


def next_wake(records, now):
    """``(when, app names)``: the earliest slot after ``now`` of any scheduled process of
    the app ``records`` (not being deleted), and the apps whose slot it is; ``(None, ())``
    when nothing is scheduled. The leader wakes then, so a run starts at its slot and
    not at the next resync. Pure."""
    best, names = None, []
    for rec in records:
        if rec.deleting:
            continue
        for proc in rec.spec["processes"].values():
            cron = cron_spec(proc)
            slot = next_slot(cron.schedule, cron.timezone, _stamp(now)) if cron else None
            if slot is None:
                continue
            t = slot.timestamp()
            if best is None or t < best:
                best, names = t, [rec.name]
            elif t == best and rec.name not in names:
                names.append(rec.name)
    return best, tuple(names)
