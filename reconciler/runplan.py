"""The leader's plan for runs: ``plan_runs(...) -> RunPlan``. Pure.

Runs are instances that end (scheduled slots, ``corral trigger``, ``corral
run``); :mod:`reconciler.cron` decides per scheduled process, this module
puts those decisions together for the whole cluster in one pass:

1. each started run follows its instance's report (running, succeeded,
   failed: exit code, duration); a finished run's desired row goes; a run
   whose node is lost, or whose instance is gone from the desired table,
   fails: it is never started a second time;
2. a run of a process gone from its app (or of an app being deleted) stops;
3. each scheduled process's due slots start (placed like an instance, by
   :func:`reconciler.scheduler.place_many`), skip or stop (``concurrency``,
   deadlines); a slot that fits on no node now stays due: the slots after it
   wait, so none is passed over;
4. requested runs (trigger, one-off) start or skip;
5. history beyond ``history`` is pruned; runs of apps gone are pruned.

The loop writes the plan with :meth:`corral.store.Store.write_runs`, fenced,
in one transaction, before it sends any node its assignment.
"""
import collections
import dataclasses
import datetime

from reconciler.cron import ACTIVE, cron_spec, cursor, due, prune, run_state, trigger
from corral.runs import RunRecord
from reconciler.model import LOST, DesiredRow
from reconciler.planner import Unplaced
from reconciler.scheduler import Candidates, Tally, place_many


ATTACH_HOLD = 12 * 3600  # seconds an attached run's environment waits for its terminal's command
# An attached run's own process: it holds the app's environment on the node while the command runs beside
# it through `corral exec`'s stream; it ends (failed, 124) if nobody reports the command's end.
HOLD = ["sh", "-c", f"sleep {ATTACH_HOLD}; echo 'no terminal reported the command ending' >&2; exit 124"]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Run rows to write, their instances to boot, desired rows to stop, run rows to
    prune, events ``(kind, name, reason, message)``, and Unplaced runs."""

    write: tuple = ()
    boot: tuple = ()
    stop: tuple = ()
    prune: tuple = ()
    events: tuple = ()
    unplaced: tuple = ()


@dataclasses.dataclass
class _Pass:
    """What one pass accumulates (private to :func:`plan_runs`)."""

    now: float
    new_id: object
    places: object
    runs: dict                      # id -> RunRecord as this pass leaves it
    write: dict = dataclasses.field(default_factory=dict)
    boot: list = dataclasses.field(default_factory=list)
    stop: list = dataclasses.field(default_factory=list)
    events: list = dataclasses.field(default_factory=list)
    unplaced: list = dataclasses.field(default_factory=list)

    def put(self, run, reason=None, message=None):
        """Record ``run`` as changed, with an event when ``reason`` is given."""
        self.runs[run.id] = self.write[run.id] = run
        if reason:
            self.events.append(("app", run.app, reason, message))

    def end(self, run, state, message, code=None):
        """Finish ``run`` now as ``state`` and stop its instance."""
        took = f" after {self.now - run.started_at:.1f}s" if run.started_at else ""
        done = dataclasses.replace(run, state=state, exit_code=code, message=message, finished_at=self.now)
        self.stop.append(run.id)
        self.put(done, "RunSucceeded" if state == "succeeded" else "RunFailed",
                 f"run {run.id} ({_what(run)}) {state}{took}: {message}")


def _what(run):
    if run.kind == "schedule":
        return f"{run.process}, slot {datetime.datetime.fromtimestamp(run.slot, datetime.timezone.utc):%Y-%m-%d %H:%M:%S}"
    return f"{run.process}, {run.kind}"


def plan_runs(apps, runs, desired, nodes, reports, now, new_id):
    """The :class:`RunPlan` of one pass. A purely computational function.

    ``apps``: ``(AppRecord, DesiredApp)`` pairs of every app; ``runs``: every RunRecord;
    ``desired``: every desired row (for room on nodes); ``nodes``: NodeView list;
    ``reports``: node -> the instance dicts it last reported; ``new_id(app, process)``
    names a run.
    """
    p = _Pass(now=now, new_id=new_id, places=_Placer(nodes, desired), runs={r.id: r for r in runs})
    present, lost = {d.id for d in desired}, {n.name for n in nodes if n.state == LOST}
    seen = {i["id"]: i for items in reports.values() for i in items}
    for run in runs:
        if run.state in ("pending", "running"):
            _follow(p, run, seen.get(run.id), run.node in lost, run.id in present)
    by_name = {rec.name: (rec, app) for rec, app in apps}
    for rec, app in apps:
        for name, proc in rec.spec["processes"].items():
            cron = cron_spec(proc)
            if cron is not None and not rec.deleting:
                _schedule(p, rec, app, name, cron)
    for run in sorted(p.runs.values(), key=lambda r: (r.created_at, r.id)):
        _requested_or_orphaned(p, run, by_name.get(run.app))
    return RunPlan(write=tuple(p.write.values()), boot=tuple(p.boot), stop=tuple(dict.fromkeys(p.stop)),
                   prune=tuple(_pruned(p.runs.values(), by_name)), events=tuple(p.events),
                   unplaced=tuple(p.unplaced))


def _follow(p, run, observed, node_lost, present):
    """Step 1: a started run follows its instance's report (an attached run, the exit code
    ``corral run`` reported: its instance only held the environment)."""
    if run.kind == "attached" and run.exit_code is not None:
        code = run.exit_code
        p.end(run, "succeeded" if code == 0 else "failed", f"the attached command exited with code {code}", code)
        return
    if not present and observed is None:
        p.end(run, "failed", "its instance is gone from the desired table; a run is never started twice")
        return
    got = run_state(observed, node_lost)
    if got is None:
        return
    state, code, message = got
    if state == "running":
        if run.state != "running":
            started = (observed or {}).get("started_at") or p.now
            p.put(dataclasses.replace(run, state="running", started_at=started))
        return
    run = run if run.started_at else dataclasses.replace(run, started_at=(observed or {}).get("started_at"))
    p.end(run, state, message or state, code)


def _schedule(p, rec, app, name, cron):
    """Step 3: one scheduled process's slots, skips and stops."""
    mine = [r for r in p.runs.values() if r.app == rec.name and r.process == name]
    d = due(cron, mine, cursor(mine, rec.applied_at or rec.created_at), p.now)
    for run_id, reason in d.stop:
        if p.runs[run_id].state in ACTIVE:
            p.end(p.runs[run_id], "failed", f"stopped: {reason}")
    starts, skips = list(d.start), dict(d.skip)
    for slot in sorted(set(starts) | set(skips)):
        if slot in skips:
            p.put(_run(p, rec.name, name, slot, "skipped", message=skips[slot]), "RunSkipped",
                  f"{name}: {skips[slot]}")
            continue
        if not _start(p, app, name, _run(p, rec.name, name, slot, "pending")):
            break  # this slot stays due, and so do the ones after it


def _run(p, app, process, slot, state, **kw):
    return RunRecord(id=p.new_id(app, process), app=app, process=process, slot=slot, kind="schedule",
                     state=state, created_at=p.now, **kw)


def _start(p, app, process, run, command=None):
    """Place ``run`` and boot its instance; False (and an Unplaced) when no node fits or
    there is no image yet."""
    proc = app.process(process) if app is not None else None
    if proc is None or app.image is None:
        return False
    node, reason = p.places.place(app, proc)
    if node is None:
        p.unplaced.append(Unplaced(app.name, process, 1, reason))
        return False
    env = dict(proc.agent_spec["env"], CORRAL_RUN=run.id)
    if run.slot is not None:
        env["CORRAL_SLOT"] = str(run.slot)
    spec = dict(proc.agent_spec, run=True, env=env)
    if command is not None:
        held = run.kind == "attached"
        spec.update(command=HOLD if held else list(command), restart="never", health=None, port=False)
        spec.pop("retries", None)
    placed = dataclasses.replace(run, state="pending", node=node)
    p.boot.append(DesiredRow(id=run.id, app=app.name, process=process, node=node, revision=app.revision,
                                  image=app.image, spec=spec, created_at=p.now))
    p.put(placed, "RunStarted", f"run {run.id} ({_what(run)}) placed on node {node}")
    return True


def _requested_or_orphaned(p, run, pair):
    """Steps 2 and 4: requested runs start or skip; runs of processes gone stop."""
    rec, app = pair if pair else (None, None)
    procs = rec.spec["processes"] if rec is not None else {}
    gone = rec is None or rec.deleting or run.process not in procs
    if run.state in ("pending", "running") and gone:
        p.end(run, "failed", "stopped: its process is gone from the app")
    if run.state != "requested":
        return
    if gone:
        p.put(dataclasses.replace(run, state="skipped", message="its process is gone from the app"),
              "RunSkipped", f"run {run.id}: its process is gone from the app")
        return
    if run.kind == "trigger":
        others = [r for r in p.runs.values() if r.app == run.app and r.process == run.process]
        verdict, detail = trigger(procs[run.process].get("concurrency", "allow"), others, run.id)
        if verdict == "skip":
            p.put(dataclasses.replace(run, state="skipped", message=detail), "RunSkipped",
                  f"run {run.id} ({_what(run)}) skipped: {detail}")
            return
        for run_id, reason in detail:
            p.end(p.runs[run_id], "failed", f"stopped: {reason}")
    _start(p, app, run.process, run, command=run.command)


def _pruned(runs, by_name):
    """Step 5: history beyond each process's limits, and every run of an app that is gone."""
    groups = collections.defaultdict(list)
    out = []
    for r in runs:
        if r.app not in by_name:
            if r.state not in ("pending", "running"):
                out.append(r.id)
            continue
        groups[(r.app, r.process)].append(r)
    for (app, process), rs in groups.items():
        history = by_name[app][0].spec["processes"].get(process, {}).get("history") or {}
        out += prune(rs, int(history.get("succeeded", 3)), int(history.get("failed", 1)))
    return sorted(out)


class _Placer:
    """Room on the nodes for runs, counted from the desired rows, updated per placement."""

    def __init__(self, nodes, desired):
        self.candidates = Candidates(nodes)
        self.tally = Tally()
        for r in desired:
            res = r.spec.get("resources") or {}
            self.tally.add(r.node, 1, float(res.get("cpu") or 0), int(res.get("memory") or 0))

    def place(self, app, proc):
        """``(node, "")`` for one run of ``proc``, or ``(None, reason)``."""
        chosen, reason = place_many(app, proc, 1, self.candidates, {}, self.tally)
        return (chosen[0], "") if chosen else (None, reason)
