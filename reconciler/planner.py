"""The reconciler's decision: what to boot and what to stop. Pure.

``plan(apps, desired, observed, nodes, new_id, now)`` compares the apps the
store holds with the desired instance table the leader wrote before and with
what agents report, and returns the changes to the table that move the
cluster toward the apps. The loop around it writes those changes (fenced by
epoch) and pushes each node its new assignment; agents then drain, stop and
start processes. Nothing here reads a clock, a socket or a file, and no input
is changed: the same inputs give the same plan (ids come from ``new_id``).

Per process of each app, in this order:

- rows on a ``lost`` node are dropped and replaced (an ``unreachable`` node's
  rows still count as running: a blip must not duplicate instances; they
  count as *not available*, though, since nobody can vouch for them);
- rows whose image and agent spec equal the app's current ones, on a node
  that is not draining, are *current*; the others are *old* (an earlier
  revision, or an instance that a drain moves off its node);
- current rows beyond the count are stopped (not available first, then the
  newest: scaling is not a rollout);
- old rows go and current rows come in steps bounded by ``maxSurge`` and
  ``maxUnavailable`` (:func:`reconciler.rollout.rolling_step`), counting an
  instance available only once ready for ``minReady``; a new boot is placed
  by :mod:`reconciler.scheduler`;
- a rollout that missed its ``progressDeadline`` (``rollout_failed``) is left
  as it stands: no more old rows stop and no more current rows boot until a
  new revision (or an undo) replaces it. It still heals: each row lost with
  its node is replaced by one of the lost row's own revision, so the mix of
  revisions where the rollout stopped is kept (as each Kubernetes ReplicaSet
  keeps its replicas): an old instance, the one known to serve, is never
  swapped for one of the revision that failed (availability first);
- until the app has an image, nothing is booted and what runs keeps running.

Apps being deleted, processes gone from the spec and rows of unknown apps
are stopped; an app being deleted whose rows are all gone, and of which no
agent reports a live instance, is purged.
"""
import collections
import dataclasses
import itertools

from reconciler.model import LOST, UNREACHABLE, DesiredRow, is_current, runs_current_revision
from reconciler.rollout import limits, rolling_step
from reconciler.scheduler import Candidates, Tally, place_many

_LIVE = frozenset({"pending", "starting", "running", "stopping", "backoff"})


@dataclasses.dataclass(frozen=True)
class Stop:
    """A row to delete from the desired table, and why (shown in events)."""

    id: str
    reason: str
    node_lost: bool = False   # dropped because its node was lost: replaced, and held by no ready list


@dataclasses.dataclass(frozen=True)
class Unplaced:
    """Instances of a process that fit on no node, and the reason."""

    app: str
    process: str
    missing: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """The table changes, and what could not be done and why."""

    boot: tuple = ()       # DesiredRow rows to insert
    stop: tuple = ()       # Stop: row ids to delete
    purge: tuple = ()      # app names to remove from the store
    unplaced: tuple = ()   # Unplaced: instances that fit nowhere

    @property
    def empty(self):
        """True when the plan changes nothing."""
        return not (self.boot or self.stop or self.purge)


def unreachable_nodes(nodes):
    """Names of the nodes whose instances nobody can vouch for (unreachable or lost)."""
    return frozenset(n.name for n in nodes if n.state in (LOST, UNREACHABLE))


def ready_since(observed, bad_nodes):
    """``{row id: ready_since}`` of the instances reported running and ready on none
    of ``bad_nodes`` (see :func:`unreachable_nodes`). Pure."""
    return {o.id: o.ready_since for o in observed if o.ready and o.state == "running" and o.node not in bad_nodes}


def availability(observed, bad_nodes, min_ready, now):
    """``is_available(row_id)`` for one app: reported running and ready for
    ``min_ready`` seconds, on none of ``bad_nodes`` (see
    :func:`unreachable_nodes`). Pure."""
    since = ready_since(observed, bad_nodes)

    def is_available(iid):
        if iid not in since:
            return False
        if min_ready <= 0:
            return True
        return since[iid] is not None and now - since[iid] >= min_ready
    return is_available


def plan(apps, desired, observed, nodes, new_id, now=0.0, others=()):
    """Decide boots, stops and purges. A purely computational function with no side effects.

    ``apps``: DesiredApp list. ``desired``: rows of the desired table as
    stored (DesiredRow's attributes), of these apps and of apps that are gone.
    ``observed``: ObservedInstance list (every agent's latest report).
    ``nodes``: NodeView list. ``new_id(app, process) -> str`` names a new
    instance. ``now`` stamps new rows and times ``minReady``. ``others``: rows
    of apps not planned in this pass; they take up room on their nodes and
    nothing else.
    """
    by_app = {a.name: a for a in apps}
    rows_by_key, lost_by_key, dropped = _sort_rows(desired, by_app, {n.name: n.state for n in nodes})
    gone = {s.id for s in dropped}
    room = _Room([r for r in itertools.chain(desired, others) if r.id not in gone], dropped)
    pass_ = _Pass(candidates=Candidates(nodes), bad_nodes=unreachable_nodes(nodes),
                  draining=frozenset(n.name for n in nodes if n.draining), new_id=new_id, now=now)
    observed_by_app = collections.defaultdict(list)
    for o in observed:
        observed_by_app[o.app].append(o)
    boot, purge, unplaced = [], [], []
    for app in sorted(apps, key=lambda a: a.name):
        seen = observed_by_app[app.name]
        if app.deleting:
            if app.name not in room.apps and not any(o.state in _LIVE for o in seen):
                purge.append(app.name)
            continue
        health = _Health(availability(seen, pass_.bad_nodes, app.min_ready, now), ready_since(seen, pass_.bad_nodes))
        for proc in app.processes:
            key = (app.name, proc.name)
            booted, missing = plan_process(app, proc, rows_by_key.get(key, []), lost_by_key.get(key, []),
                                           room, pass_, health)
            boot.extend(booted)
            unplaced.extend(missing)
    return Plan(boot=tuple(boot), stop=tuple(room.stops), purge=tuple(purge), unplaced=tuple(unplaced))


@dataclasses.dataclass(frozen=True)
class _Pass:
    """What every process of one plan shares: the nodes, and how new rows are named and stamped."""

    candidates: Candidates
    bad_nodes: frozenset
    draining: frozenset
    new_id: object
    now: float


@dataclasses.dataclass(frozen=True)
class _Health:
    """One app's instances as reports show them: ``available(id)`` and the ids ``ready``."""

    available: object
    ready: dict


class _Room:
    """The desired table as the plan leaves it, node by node: instances, cpu and memory taken (so
    that placements see each other), and the stops decided so far, in order."""

    def __init__(self, rows, stops=()):
        self.tally = Tally()
        self.apps = {r.app for r in rows}
        self.stops = list(stops)
        self.stopping = {s.id for s in stops}
        for r in rows:
            self._count(r, 1)

    def _count(self, row, sign):
        res = row.spec.get("resources") or {}
        self.tally.add(row.node, sign, float(res.get("cpu") or 0), int(res.get("memory") or 0))

    def release(self, row, reason):
        """Stop ``row`` for ``reason``, freeing its room."""
        self.stops.append(Stop(row.id, reason))
        self.stopping.add(row.id)
        self._count(row, -1)

    def place(self, app, proc, n, candidates, same):
        """``(nodes chosen, reason when fewer than n)`` for ``n`` new instances (:func:`place_many`)."""
        return place_many(app, proc, n, candidates, same, self.tally)


def _sort_rows(desired, by_app, node_state):
    """``(rows by (app, process), rows lost with their node by (app, process), stops)``: every row
    of an app gone or deleting, of a process gone, or on a lost node is stopped; the rest are kept."""
    rows_by_key, lost_by_key, stops = collections.defaultdict(list), collections.defaultdict(list), []
    for row in sorted(desired, key=lambda r: r.id):
        app = by_app.get(row.app)
        if app is None:
            stops.append(Stop(row.id, "app no longer exists"))
        elif app.deleting:
            stops.append(Stop(row.id, "app is being deleted"))
        elif app.process(row.process) is None:
            stops.append(Stop(row.id, f"process {row.process} was removed from the spec"))
        elif node_state.get(row.node, LOST) == LOST:
            stops.append(Stop(row.id, f"node {row.node} is lost", node_lost=True))
            lost_by_key[(row.app, row.process)].append(row)
        else:
            rows_by_key[(row.app, row.process)].append(row)
    return rows_by_key, lost_by_key, stops


def plan_process(app, proc, rows, lost, room, pass_, health):
    """``(rows to boot, Unplaced)`` for one process of a live app; its stops go into ``room``.

    ``rows``: its rows on nodes that are not lost; ``lost``: its rows lost with their node (already
    stopped). Scale-downs first, then a rolling step; see the module's docstring for the rules.
    """
    current = [r for r in rows if is_current(r, app, pass_.draining)]
    old = [r for r in rows if not is_current(r, app, pass_.draining)]
    if len(current) > proc.count:
        # not available first, then newest first
        doomed = sorted(current, key=lambda r: (health.available(r.id), -r.created_at, r.id))
        for r in doomed[:len(current) - proc.count]:
            room.release(r, f"scaled down to {proc.count}")
        current = [r for r in current if r.id not in room.stopping]
    if app.image is None:
        if proc.count == 0:
            for r in old:
                room.release(r, "scaled down to 0")
        return [], []
    if app.rollout_failed and (old or not all(runs_current_revision(r, app) for r in lost)):
        return _replace_losses(app, proc, current + old, lost, room, pass_)
    # Old rows go oldest first, those on a draining node before the rest.
    old.sort(key=lambda r: (r.node not in pass_.draining, r.created_at, r.id))
    surge, unavailable = limits(app, proc.count)
    step = rolling_step(proc.count, surge, unavailable, current, old, lambda r: health.available(r.id),
                        lambda r: r.id in health.ready)
    for r in step.stop:
        room.release(r, f"node {r.node} is draining" if runs_current_revision(r, app)
                     else f"replaced by revision {app.revision}")
    # Spread counts the current revision only: old instances are on their way out.
    chosen, reason = room.place(app, proc, step.boot, pass_.candidates, collections.Counter(r.node for r in current))
    boot = [DesiredRow(id=pass_.new_id(app.name, proc.name), app=app.name, process=proc.name, node=node,
                       revision=app.revision, image=app.image, spec=proc.agent_spec, created_at=pass_.now)
            for node in chosen]
    missing = [Unplaced(app.name, proc.name, proc.count - len(current) - len(chosen), reason)] if reason else []
    return boot, missing


def _replace_losses(app, proc, staying, lost, room, pass_):
    """A failed rollout stands still until a new revision: only its losses are replaced, each by a
    row of the lost row's own revision. ``(rows to boot, Unplaced)``."""
    same = collections.Counter(r.node for r in staying)
    boot, missing = [], []
    for template, n in _revisions_of(lost):
        like = proc if runs_current_revision(template, app) else _process_of(proc, template.spec)
        chosen, reason = room.place(app, like, n, pass_.candidates, same)
        boot.extend(dataclasses.replace(template, id=pass_.new_id(app.name, proc.name), node=node,
                                        created_at=pass_.now) for node in chosen)
        if reason:
            missing.append(Unplaced(app.name, proc.name, n - len(chosen), reason))
    return boot, missing


def _revisions_of(rows):
    """``[(first row, how many)]`` of ``rows`` grouped by revision, image and spec, in order."""
    groups = []
    for r in rows:
        for g in groups:
            if (g[0].revision, g[0].image, g[0].spec) == (r.revision, r.image, r.spec):
                g[1] += 1
                break
        else:
            groups.append([r, 1])
    return [tuple(g) for g in groups]


def _process_of(proc, spec):
    """``proc`` as it was with the agent ``spec`` of an earlier revision (its resource requests)."""
    res = spec.get("resources") or {}
    return dataclasses.replace(proc, agent_spec=spec, cpu=float(res.get("cpu") or 0.0),
                               memory=int(res.get("memory") or 0))
