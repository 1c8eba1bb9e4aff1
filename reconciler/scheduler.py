"""Which node gets a new instance. Pure and deterministic given its inputs.

Order of decision, as in DESIGN.md:

1. candidates: nodes that are ``ready`` (so neither cordoned, unreachable nor
   lost) and carry every label of the app's ``nodeSelector``;
2. fit: the node's capacity minus what is already allocated there covers the
   process's cpu and memory requests;
3. spread: fewest instances of this same process first (with 2 instances and
   2+ nodes, never both on one node);
4. then the least allocated node (fewest instances of any app), then by name
   so that equal inputs always give the same answer.
"""
import dataclasses

from reconciler.model import READY


@dataclasses.dataclass(frozen=True)
class Placement:
    """The chosen node, or None with the reason nothing fits."""

    node: str | None
    reason: str = ""


def _fmt_bytes(n):
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def place(app, process, nodes, same_process, load, cpu_used, mem_used):
    """Choose a node for one new instance of ``app``/``process``.

    ``nodes``: NodeViews. ``same_process``: node -> instances of this process
    there; ``load``: node -> instances of any app; ``cpu_used``/``mem_used``:
    node -> requests already allocated. Returns a :class:`Placement`. This is
    a purely computational function with no side effects.
    """
    ready = [n for n in nodes if n.state == READY]
    if not ready:
        return Placement(None, "no node is ready")
    selector = dict(app.node_selector)
    matching = [n for n in ready if all(dict(n.labels).get(k) == v for k, v in selector.items())]
    if not matching:
        wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return Placement(None, f"no ready node matches {wanted}")
    fitting = [n for n in matching
               if (not process.cpu or n.cpu - cpu_used.get(n.name, 0.0) >= process.cpu - 1e-9)
               and (not process.memory or n.memory - mem_used.get(n.name, 0) >= process.memory)]
    if not fitting:
        if process.memory and all(n.memory - mem_used.get(n.name, 0) < process.memory for n in matching):
            return Placement(None, f"no node has {_fmt_bytes(process.memory)} free memory")
        return Placement(None, f"no node has {process.cpu:g} cpu free")

    def rank(n):
        spread_key = same_process.get(n.name, 0) if app.spread else 0
        return (spread_key, load.get(n.name, 0), n.name)

    return Placement(min(fitting, key=rank).name)
