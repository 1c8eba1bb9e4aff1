"""Rolling-update arithmetic for one process, and rollout progress. Pure.

A process being rolled has *current* instances (the app's revision, on a node
that is not draining) and *old* ones (an earlier revision, or any instance on
a draining node: a drain is a rollout of one node's instances onto others).
:func:`rolling_step` says which old ones to stop now and how many current
ones to boot now, within ``maxSurge`` and ``maxUnavailable``;
:func:`progress` says whether the rollout still moves, or missed its
``progressDeadline``. Nothing here reads a clock: ``now`` is passed in.
"""
import dataclasses

from corral.spec import rollout_limits


@dataclasses.dataclass(frozen=True)
class Step:
    """One pass of a rollout: old rows to stop now, and how many current rows to boot now."""

    stop: tuple
    boot: int


def limits(app, count):
    """``(max_surge, max_unavailable)`` in instances for ``count`` instances of ``app``.

    Surge rounds up and unavailable down, as Kubernetes does; both 0 gives a
    surge of 1 so that a rollout can always move (see
    :func:`corral.spec.rollout_limits`).
    """
    return rollout_limits({"maxSurge": app.max_surge, "maxUnavailable": app.max_unavailable}, count)


def rolling_step(count, surge, unavailable, current, old, is_available, is_ready=None):
    """Which ``old`` rows to stop and how many current rows to boot, in this pass.

    ``count``: instances wanted; ``surge``/``unavailable``: the limits in
    instances; ``current``/``old``: the process's rows (old ones in the order
    they should go); ``is_available(row)``: ready for ``minReady`` on a
    reachable node; ``is_ready(row)``: reported ready on a reachable node
    (default: ``is_available``). A purely computational function with no side effects.

    Two bounds hold after the step:

    - at most ``count + surge`` rows exist (current + old), and
    - the available ones that are stopped leave at least ``count - unavailable``
      available. An old row that is not even ready may always go: stopping it
      costs no availability (Kubernetes' cleanup of unhealthy replicas). One
      that is ready but not yet for ``minReady`` stays until it is available:
      it serves, and a reconciler that has just started sees every instance so.

    Worked example: 10 instances, maxSurge 25% -> 3 (2.5 rounded up),
    maxUnavailable 25% -> 2 (2.5 rounded down); so at most 13 rows and at
    least 8 available. Pass 1: 10 old, all available: 2 may go (10 - 8), leaving
    8 rows, so 5 new may boot (13 - 8). Pass 2, the 5 new not ready yet:
    8 available, none may go, 13 rows, none may boot. Pass 3, the 5 new
    available: 13 available, 5 old may go (13 - 8), leaving 3 old + 5 new = 8
    rows, so the last 5 new boot. Pass 4, those available: the last 3 old go.
    With maxSurge 1, maxUnavailable 0 and 2 instances: boot 1 new (3 rows),
    when it is available stop 1 old and boot the second new, when that one is
    available stop the last old; never fewer than 2 available.
    """
    is_ready = is_ready or is_available
    min_available = max(0, count - unavailable)
    max_total = count + surge
    available = sum(1 for r in current if is_available(r)) + sum(1 for r in old if is_available(r))
    budget = available - min_available
    stop = []
    for r in old:
        if not is_ready(r):
            stop.append(r)
        elif budget > 0 and is_available(r):
            stop.append(r)
            budget -= 1
    remaining = len(current) + len(old) - len(stop)
    boot = max(0, min(count - len(current), max_total - remaining))
    return Step(tuple(stop), boot)


def progress(prev, revision, updated, available, complete, now, deadline):
    """The rollout's progress record after a pass, and whether it has failed.

    ``prev``: the record of the last pass (``{"revision", "updated",
    "available", "since"}``) or None; ``updated``/``available``: rows at the
    current revision, and those available. Progress is a new revision, or a
    change of either count; ``since`` is when it last happened. A rollout that
    is not ``complete`` and has not moved for ``deadline`` seconds has failed
    (Kubernetes' ProgressDeadlineExceeded); a failed revision stays failed
    until a new revision. Returns ``(record, failed)``. Pure.
    """
    record = {"revision": revision, "updated": updated, "available": available, "since": now,
              "failed": False}
    if prev and prev.get("revision") == revision:
        if prev.get("failed"):
            return dict(prev), True
        if (prev.get("updated"), prev.get("available")) == (updated, available):
            record["since"] = prev.get("since", now)
    if not complete and now - record["since"] > deadline:
        record["failed"] = True
    return record, record["failed"]
