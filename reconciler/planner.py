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

from reconciler.model import LOST, UNREACHABLE, DesiredRow
from reconciler.rollout import limits, rolling_step
from reconciler.scheduler import Candidates, place_many

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

    ``apps``: DesiredApp list. ``desired``: rows of the desired table as stored (DesiredRow's attributes)
    (of these apps, and of apps that are gone). ``observed``:
    ObservedInstance list (every agent's latest report). ``nodes``: NodeView
    list. ``new_id(app, process) -> str`` names a new instance. ``now``
    stamps new rows and times ``minReady``. ``others``: rows of apps not
    planned in this pass; they take up room on their nodes and nothing else.
    """
    by_app = {a.name: a for a in apps}
    node_state = {n.name: n.state for n in nodes}
    draining = {n.name for n in nodes if n.draining}
    boot, stop, purge, unplaced = [], [], [], []
    stopping = set()

    def drop(row, reason, node_lost=False):
        stop.append(Stop(row.id, reason, node_lost))
        stopping.add(row.id)

    rows_by_key = collections.defaultdict(list)
    lost_by_key = collections.defaultdict(list)  # rows of live processes lost with their node
    for row in sorted(desired, key=lambda r: r.id):
        app = by_app.get(row.app)
        if app is None:
            drop(row, "app no longer exists")
        elif app.deleting:
            drop(row, "app is being deleted")
        elif app.process(row.process) is None:
            drop(row, f"process {row.process} was removed from the spec")
        elif node_state.get(row.node, LOST) == LOST:
            drop(row, f"node {row.node} is lost", node_lost=True)
            lost_by_key[(row.app, row.process)].append(row)
        else:
            rows_by_key[(row.app, row.process)].append(row)

    # Allocation as the table will stand, so placements see each other.
    load, cpu_used, mem_used = collections.Counter(), collections.Counter(), collections.Counter()
    live_apps = set()
    for r in itertools.chain(desired, others):
        if r.id in stopping:
            continue
        live_apps.add(r.app)
        load[r.node] += 1
        res = r.spec.get("resources") or {}
        cpu_used[r.node] += float(res.get("cpu") or 0)
        mem_used[r.node] += int(res.get("memory") or 0)

    bad_nodes = unreachable_nodes(nodes)
    candidates = Candidates(nodes)
    observed_by_app = collections.defaultdict(list)
    for o in observed:
        observed_by_app[o.app].append(o)

    def release(r, reason):
        drop(r, reason)
        load[r.node] -= 1
        res = r.spec.get("resources") or {}
        cpu_used[r.node] -= float(res.get("cpu") or 0)
        mem_used[r.node] -= int(res.get("memory") or 0)

    for app in sorted(apps, key=lambda a: a.name):
        if app.deleting:
            live = [o for o in observed_by_app[app.name] if o.state in _LIVE]
            if app.name not in live_apps and not live:
                purge.append(app.name)
            continue
        available = availability(observed_by_app[app.name], bad_nodes, app.min_ready, now)
        ready = ready_since(observed_by_app[app.name], bad_nodes)
        for proc in app.processes:
            rows = rows_by_key.get((app.name, proc.name), [])
            current = [r for r in rows if _is_current(r, app, proc) and r.node not in draining]
            current_ids = {r.id for r in current}
            old = [r for r in rows if r.id not in current_ids]
            if len(current) > proc.count:
                # not available first, then newest first
                doomed = sorted(current, key=lambda r: (available(r.id), -r.created_at, r.id))
                for r in doomed[:len(current) - proc.count]:
                    release(r, f"scaled down to {proc.count}")
                current = [r for r in current if r.id not in stopping]
            if app.image is None:
                if proc.count == 0:
                    for r in old:
                        release(r, "scaled down to 0")
                continue
            lost = lost_by_key.get((app.name, proc.name), [])
            if app.rollout_failed and (old or any(not _is_current(r, app, proc) for r in lost)):
                # A failed rollout stands still until a new revision; only its losses are replaced.
                same = collections.Counter(r.node for r in itertools.chain(current, old))
                for template, n in _revisions_of(lost):
                    like = proc if _is_current(template, app, proc) else _process_of(proc, template.spec)
                    chosen, reason = place_many(app, like, n, candidates, same, load, cpu_used, mem_used)
                    for node in chosen:
                        boot.append(dataclasses.replace(template, id=new_id(app.name, proc.name), node=node,
                                                        created_at=now))
                    if reason:
                        unplaced.append(Unplaced(app.name, proc.name, n - len(chosen), reason))
                continue
            # Old rows go oldest first, those on a draining node before the rest.
            old.sort(key=lambda r: (r.node not in draining, r.created_at, r.id))
            surge, unavailable = limits(app, proc.count)
            step = rolling_step(proc.count, surge, unavailable, current, old, lambda r: available(r.id),
                                lambda r: r.id in ready)
            for r in step.stop:
                release(r, f"node {r.node} is draining" if r.node in draining and _is_current(r, app, proc)
                        else f"replaced by revision {app.revision}")
            # Spread counts the current revision only: old instances are on their way out.
            same = collections.Counter(r.node for r in current)
            chosen, reason = place_many(app, proc, step.boot, candidates, same, load, cpu_used, mem_used)
            for node in chosen:
                boot.append(DesiredRow(
                    id=new_id(app.name, proc.name), app=app.name, process=proc.name, node=node,
                    revision=app.revision, image=app.image, spec=proc.agent_spec, created_at=now))
            if reason:
                unplaced.append(Unplaced(app.name, proc.name, proc.count - len(current) - len(chosen), reason))

    return Plan(boot=tuple(boot), stop=tuple(stop), purge=tuple(purge), unplaced=tuple(unplaced))


def _is_current(row, app, proc):
    """Whether ``row`` runs the app's current image and ``proc``'s current agent spec."""
    return row.image == app.image and row.spec == proc.agent_spec


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
