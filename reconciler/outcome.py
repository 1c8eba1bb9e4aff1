"""What one pass of the leader means beside the plan: the table as the plan leaves it, the events
to record, each app's new status and the nodes whose assignment changed. Pure.

:meth:`reconciler.loop.Controller.sync` reads (the store, the reports), calls
:func:`reconciler.planner.plan`, then :func:`outcome`, then writes what it
returns, in order: the table and its events, the assignments, the revisions,
the statuses and their events.
"""
import collections
import dataclasses
from typing import Optional

from reconciler.model import DesiredApp
from reconciler.planner import availability, unreachable_nodes
from reconciler.status import app_status


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One app made ready for the planner: its stored ``record``, its planner view ``app``, its
    ``build`` (None: none yet), the hash of its revision, the revision to record (None: the
    revision did not change), and the conditions its status carries beside its own (those of its
    services: ``ServicesReady``, ``BackupVerified``)."""

    record: object
    app: DesiredApp
    build: object
    rev_hash: Optional[str]
    new_revision: object = None
    conditions: tuple = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a pass writes besides the table changes of its plan."""

    after: tuple          # the desired rows once the plan is written
    table_events: tuple   # (kind, name, reason, message, actor): placements, stops, deletions
    statuses: dict        # app name -> its new status, only where it changed
    status_events: tuple  # rollouts that completed or missed their deadline in this pass
    touched: frozenset    # nodes whose assignment changed
    failed: dict          # app -> why its status could not be worked out (it is retried)


def outcome(prepared, desired, planned_rows, result, observed, nodes, now, actor):
    """The :class:`Outcome` of plan ``result`` over ``desired`` (every row; ``planned_rows``: the
    rows of the apps planned). ``observed``: ObservedInstance list; ``nodes``: NodeView list."""
    stopped = {s.id for s in result.stop}
    by_id = {r.id: r for r in planned_rows}
    after = tuple([r for r in desired if r.id not in stopped] + list(result.boot))
    table_events = tuple(
        [("app", row.app, "Scheduled",
          f"instance {row.id} ({row.process}, revision {row.revision}) placed on node {row.node}", actor)
         for row in result.boot]
        + [("app", by_id[s.id].app, "Stopping", f"instance {s.id}: {s.reason}", actor) for s in result.stop]
        + [("app", name, "Deleted", "every instance stopped; app removed", actor) for name in result.purge])
    touched = frozenset({r.node for r in result.boot} | {by_id[s.id].node for s in result.stop})
    statuses, failed = _statuses(prepared, after, result, observed, nodes, now)
    status_events = tuple(e for p in prepared if p.record.name in statuses
                          for e in progress_events(p.record, statuses[p.record.name], actor))
    return Outcome(after=after, table_events=table_events, statuses=statuses, status_events=status_events,
                   touched=touched, failed=failed)


def _statuses(prepared, after, result, observed, nodes, now):
    """``({app: new status where it changed}, {app: why its status failed})``; one app's trouble
    does not hold up the others."""
    ready_ids = {o.id for o in observed if o.ready and o.state == "running"}
    bad_nodes = unreachable_nodes(nodes)
    draining = frozenset(n.name for n in nodes if n.draining)
    observed_by_app, after_by_app, unplaced_by_app = (collections.defaultdict(list) for _ in range(3))
    for o in observed:
        observed_by_app[o.app].append(o)
    for r in after:
        after_by_app[r.app].append(r)
    for u in result.unplaced:
        unplaced_by_app[u.app].append(u)
    statuses, failed = {}, {}
    for p in prepared:
        rec = p.record
        if rec.deleting or rec.name in result.purge:
            continue
        try:
            available = availability(observed_by_app[rec.name], bad_nodes, p.app.min_ready, now)
            rows = after_by_app[rec.name]
            status = app_status(
                generation=rec.generation, app=p.app, build=p.build, rev_hash=p.rev_hash, rows=rows,
                ready_ids=ready_ids, available_ids={r.id for r in rows if available(r.id)},
                unplaced=unplaced_by_app[rec.name], prev=rec.status, now=now, draining=draining)
            if p.conditions:
                status = {**status, "conditions": status["conditions"] + list(p.conditions)}
        except Exception as e:  # noqa: BLE001  (an app whose status cannot be worked out is retried alone)
            failed[rec.name] = str(e) or type(e).__name__
            continue
        if status != rec.status:
            statuses[rec.name] = status
    return statuses, failed


def progress_events(rec, status, actor):
    """The event of a rollout that completed or missed its deadline, once, when ``status`` (new)
    says so and ``rec.status`` (before) did not."""
    conds = {c["type"]: c for c in status["conditions"]}
    before = {c["type"]: c for c in rec.status.get("conditions", [])}
    prog, was = conds["Progressing"], before.get("Progressing", {})
    if prog["reason"] != was.get("reason") and prog["reason"] in ("Complete", "ProgressDeadlineExceeded"):
        reason = "RolloutComplete" if prog["reason"] == "Complete" else "ProgressDeadlineExceeded"
        return [("app", rec.name, reason, prog["message"], actor)]
    return []
