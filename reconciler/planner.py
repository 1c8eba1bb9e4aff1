"""The reconciler's decision: what to boot and what to stop. Pure.

``plan(apps, desired, observed, nodes, new_id)`` compares the apps the store
holds with the desired instance table the leader wrote before and with what
agents report, and returns the changes to the table that move the cluster
toward the apps. The loop around it writes those changes (fenced by epoch)
and pushes each node its new assignment; agents then start and stop
processes. Nothing here reads a clock, a socket or a file, and no input is
changed: the same inputs give the same plan (ids come from ``new_id``).

Per process of each app, in this order:

- rows on a ``lost`` node are dropped and replaced (an ``unreachable`` node's
  rows still count as running: a blip must not duplicate instances);
- rows whose image and agent spec equal the app's current ones are *current*;
  others are *old* (a new revision: image or process spec changed);
- missing current rows are booted, placed by :mod:`reconciler.scheduler`;
  extra current rows are stopped (not-ready ones first, then the newest);
- old rows are stopped once every wanted current instance is ready, so an
  update never takes the app below its count (a simple full surge; rolling
  limits come with the rolling update work);
- until the app has an image, nothing is booted and what runs keeps running.

Apps being deleted, processes gone from the spec and rows of unknown apps
are stopped; an app being deleted whose rows are all gone, and of which no
agent reports a live instance, is purged.
"""
import collections
import dataclasses

from reconciler.model import LOST
from reconciler.scheduler import place
from corral.store.base import DesiredInstance

_LIVE = frozenset({"pending", "starting", "running", "stopping", "backoff"})


@dataclasses.dataclass(frozen=True)
class Stop:
    id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Unplaced:
    app: str
    process: str
    missing: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """The table changes, and what could not be done and why."""

    boot: tuple = ()       # DesiredInstance rows to insert
    stop: tuple = ()       # Stop: row ids to delete
    purge: tuple = ()      # app names to remove from the store
    unplaced: tuple = ()   # Unplaced: instances that fit nowhere

    @property
    def empty(self):
        return not (self.boot or self.stop or self.purge)


def plan(apps, desired, observed, nodes, new_id, now=0.0):
    """Decide boots, stops and purges. A purely computational function with no side effects.

    ``apps``: DesiredApp list. ``desired``: DesiredInstance rows as stored.
    ``observed``: ObservedInstance list (every agent's latest report).
    ``nodes``: NodeView list. ``new_id(app, process) -> str`` names a new
    instance. ``now`` stamps new rows.
    """
    by_app = {a.name: a for a in apps}
    node_state = {n.name: n.state for n in nodes}
    boot, stop, purge, unplaced = [], [], [], []
    stopping = set()

    def drop(row, reason):
        stop.append(Stop(row.id, reason))
        stopping.add(row.id)

    rows_by_key = collections.defaultdict(list)
    for row in sorted(desired, key=lambda r: r.id):
        app = by_app.get(row.app)
        if app is None:
            drop(row, "app no longer exists")
        elif app.deleting:
            drop(row, "app is being deleted")
        elif app.process(row.process) is None:
            drop(row, f"process {row.process} was removed from the spec")
        elif node_state.get(row.node, LOST) == LOST:
            drop(row, f"node {row.node} is lost")
        else:
            rows_by_key[(row.app, row.process)].append(row)

    # Allocation as the table will stand, so placements see each other.
    kept = [r for r in desired if r.id not in stopping]
    load = collections.Counter(r.node for r in kept)
    cpu_used, mem_used = collections.Counter(), collections.Counter()
    for r in kept:
        res = (r.spec.get("resources") or {})
        cpu_used[r.node] += float(res.get("cpu") or 0)
        mem_used[r.node] += int(res.get("memory") or 0)

    ready_ids = {o.id for o in observed if o.ready and o.state == "running"}

    for app in sorted(apps, key=lambda a: a.name):
        if app.deleting:
            live = [o for o in observed if o.app == app.name and o.state in _LIVE]
            if not any(r.app == app.name for r in kept) and not live:
                purge.append(app.name)
            continue
        for proc in app.processes:
            rows = rows_by_key.get((app.name, proc.name), [])
            current = [r for r in rows if r.image == app.image and r.spec == proc.agent_spec]
            old = [r for r in rows if r not in current]
            # Spread counts the current revision only: old instances are on their way out.
            same = collections.Counter(r.node for r in current)
            if len(current) > proc.count:
                # not-ready first, then newest first
                doomed = sorted(current, key=lambda r: (r.id in ready_ids, -r.created_at, r.id))
                for r in doomed[:len(current) - proc.count]:
                    drop(r, f"scaled down to {proc.count}")
                    load[r.node] -= 1
                    same[r.node] -= 1
                current = [r for r in current if r.id not in stopping]
            if app.image is not None:
                missing = proc.count - len(current)
                for _ in range(missing):
                    p = place(app, proc, nodes, same, load, cpu_used, mem_used)
                    if p.node is None:
                        unplaced.append(Unplaced(app.name, proc.name, proc.count - len(current), p.reason))
                        break
                    row = DesiredInstance(
                        id=new_id(app.name, proc.name), app=app.name, process=proc.name, node=p.node,
                        revision=app.revision, image=app.image,
                        spec=proc.agent_spec,
                        created_at=now)
                    boot.append(row)
                    current.append(row)
                    load[p.node] += 1
                    same[p.node] += 1
                    cpu_used[p.node] += proc.cpu
                    mem_used[p.node] += proc.memory
            if old and len(current) == proc.count and all(r.id in ready_ids for r in current):
                for r in old:
                    drop(r, f"replaced by revision {app.revision}")

    return Plan(boot=tuple(boot), stop=tuple(stop), purge=tuple(purge), unplaced=tuple(unplaced))
