"""Frozen views of desired and observed state: the planner's only inputs.

The loop builds these from the store and from agent reports; the planner and
the scheduler read them and never change them (Nomad's allocation sets, made
immutable by construction).
"""
import dataclasses
from typing import Optional

# Node states, as `corral get nodes` shows them.
READY, UNREACHABLE, LOST, CORDONED = "ready", "unreachable", "lost", "cordoned"


@dataclasses.dataclass(frozen=True)
class DesiredRow:
    """One instance placed by the planner: the fields of a row of the desired table.

    The planner reads the rows it is given by these attributes alone (the store's
    records have the same) and makes new ones of this type, which the loop writes
    as they are; ``spec`` is the agent spec, ``revision`` the app revision number.
    """

    id: str
    app: str
    process: str
    node: str
    revision: str
    image: str
    spec: dict
    created_at: float


@dataclasses.dataclass(frozen=True)
class DesiredProcess:
    """One process of an app as the planner needs it.

    ``agent_spec`` is exactly what the agent receives (command, env, port,
    restart, periods, resources, health); two instances with equal
    ``agent_spec`` and image are interchangeable.
    """

    name: str
    count: int
    agent_spec: dict
    cpu: float = 0.0
    memory: int = 0


@dataclasses.dataclass(frozen=True)
class DesiredApp:
    """An app as the planner sees it.

    ``image`` is None until a build succeeded. ``revision`` labels new instances.
    """

    name: str
    deleting: bool
    revision: str
    image: Optional[str]
    processes: tuple
    node_selector: tuple = ()  # ((key, value), ...)
    spread: bool = True
    max_surge: object = "25%"        # int or "NN%" (update.maxSurge)
    max_unavailable: object = "25%"  # int or "NN%" (update.maxUnavailable)
    min_ready: float = 0.0           # seconds ready before an instance counts as available
    progress_deadline: float = 600.0  # seconds without progress before the rollout fails
    rollout_failed: bool = False     # the current revision missed its deadline: stop rolling

    def process(self, name):
        """The process called ``name``, or None."""
        for p in self.processes:
            if p.name == name:
                return p
        return None


@dataclasses.dataclass(frozen=True)
class NodeView:
    """A node's placement-relevant facts: state, labels, capacity."""

    name: str
    state: str
    labels: tuple = ()  # ((key, value), ...)
    cpu: float = 0.0
    memory: int = 0
    draining: bool = False  # cordoned by `corral node drain`: its instances move off


@dataclasses.dataclass(frozen=True)
class ObservedInstance:
    """What an agent last said about one instance."""

    id: str
    node: str
    app: str
    state: str
    ready: bool
    ready_since: Optional[float] = None  # when this reconciler first saw it ready (None: not ready)


def runs_current_revision(row, app):
    """Whether the desired ``row`` runs ``app``'s current image and its process's current agent spec."""
    proc = app.process(row.process)
    return app.image is not None and proc is not None and row.image == app.image and row.spec == proc.agent_spec


def is_current(row, app, draining=frozenset()):
    """Whether ``row`` is *current*: it runs the current revision (:func:`runs_current_revision`)
    on a node that is not ``draining`` (a drain is a rollout of one node's instances). The one
    definition: the planner keeps current rows and replaces the others (*old*), the status counts
    current rows as ``updated``."""
    return row.node not in draining and runs_current_revision(row, app)


def frozen_items(mapping):
    """A dict as a sorted tuple of pairs, for frozen dataclass fields."""
    return tuple(sorted((mapping or {}).items()))
