"""The agent's pure core: what to start and what to stop, given what runs and what is assigned.

This is a purely computational module with no side effects: no clock, no
files, no processes. The shell in :mod:`nodeagent.agent` reads its instances,
calls :func:`diff`, then acts on the result.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class InstanceView:
    """What :func:`diff` needs to know of one instance the agent holds.

    ``stopping`` is true from the moment a stop was requested until the
    instance is forgotten (states ``stopping`` and ``stopped`` of a removal).
    """

    id: str
    stopping: bool = False


@dataclasses.dataclass(frozen=True)
class Changes:
    """The buckets of a diff.

    - ``start``: assignment entries (dicts, as received) to start, in assignment order;
    - ``stop``: ids of running instances that are no longer assigned;
    - ``keep``: ids assigned and already held (left as they are);
    - ``deferred``: ids assigned whose previous instance of the same id is
      still being stopped; they are started by a later diff, once it is gone.
    """

    start: tuple = ()
    stop: tuple = ()
    keep: tuple = ()
    deferred: tuple = ()
    refused: tuple = ()


def diff(current, assigned, ran=frozenset()):
    """Compare ``current`` (id -> InstanceView) with ``assigned`` (a list of assignment dicts);
    ``ran``: the ids of the runs this agent has ever started.

    An id already held is kept even when its spec differs: the reconciler
    gives a new id to a new revision, so a changed spec under the same id is
    not acted on. When an id appears twice in ``assigned``, the first entry
    counts. Never mutates its inputs.
    """
    start, keep, deferred, refused = [], [], [], []
    wanted = set()
    for entry in assigned:
        instance_id = entry["id"]
        if instance_id in wanted:
            continue
        wanted.add(instance_id)
        view = current.get(instance_id)
        if view is None and instance_id in ran and (entry.get("spec") or {}).get("run"):
            refused.append(instance_id)
        elif view is None:
            start.append(entry)
        elif view.stopping:
            deferred.append(instance_id)
        else:
            keep.append(instance_id)
    stop = [iid for iid, view in current.items() if iid not in wanted and not view.stopping]
    return Changes(start=tuple(start), stop=tuple(sorted(stop)), keep=tuple(keep), deferred=tuple(deferred),
                   refused=tuple(refused))
