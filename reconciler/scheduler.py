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
import heapq
import itertools

from corral.spec.quantities import format_memory
from reconciler.model import READY


class Candidates:
    """The ready nodes of one plan, with their labels as dicts: built once, read by every placement."""

    def __init__(self, nodes):
        self.ready = [(n, dict(n.labels)) for n in nodes if n.state == READY]
        self._matching = {}  # selector as sorted pairs -> (its nodes, their names): 1,000 apps share a few

    def matching(self, selector):
        """Ready nodes that carry every label of ``selector`` (a dict); do not change the list."""
        return self._lookup(selector)[0]

    def matching_names(self, selector):
        """The names of :meth:`matching`'s nodes, in the same order; do not change the list."""
        return self._lookup(selector)[1]

    def _lookup(self, selector):
        key = tuple(sorted(selector.items()))
        found = self._matching.get(key)
        if found is None:
            nodes = [n for n, labels in self.ready if all(labels.get(k) == v for k, v in key)]
            found = self._matching[key] = (nodes, [n.name for n in nodes])
        return found


def place_many(app, process, count, candidates, same_process, load, cpu_used, mem_used):
    """Choose nodes for ``count`` new instances of ``app``/``process``, one after another.

    ``candidates``: the plan's :class:`Candidates`. ``same_process``: node ->
    instances of this process there; ``load``: node -> instances of any app;
    ``cpu_used``/``mem_used``: node -> requests already allocated. The
    counters are updated for each placement, so the next one sees it.
    Returns ``(nodes chosen, reason)``: fewer than ``count`` nodes with the
    reason the rest fit nowhere, or all of them with reason "". Equal inputs
    give equal answers.

    A heap ordered by the rank below gives each placement in O(log nodes)
    instead of a scan of every node: a node that does not fit now will not
    fit later in this call either (allocations only grow), so it leaves the heap.
    """
    if count <= 0:
        return [], ""
    if not candidates.ready:
        return [], "no node is ready"
    selector = dict(app.node_selector)
    matching = candidates.matching(selector)
    if not matching:
        wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return [], f"no ready node matches {wanted}"

    def rank(n):
        return (same_process.get(n.name, 0) if app.spread else 0, load.get(n.name, 0), n.name)

    def fits(n):
        return ((not process.cpu or n.cpu - cpu_used.get(n.name, 0.0) >= process.cpu - 1e-9)
                and (not process.memory or n.memory - mem_used.get(n.name, 0) >= process.memory))

    # Entries are (*rank(n), i), built with C-level map/zip: a call of rank() per node and
    # process was most of placing 10,000 instances on 1,000 nodes.
    names = candidates.matching_names(selector)
    zeros = itertools.repeat(0)
    heap = list(zip(map((same_process if app.spread else {}).get, names, zeros), map(load.get, names, zeros),
                    names, range(len(names))))
    heapq.heapify(heap)
    chosen = []
    while len(chosen) < count and heap:
        *key, i = heapq.heappop(heap)
        n = matching[i]
        current = rank(n)
        if tuple(key) != current:  # stale entry: this node's rank grew since it was pushed
            heapq.heappush(heap, (*current, i))
            continue
        if not fits(n):
            continue
        chosen.append(n.name)
        same_process[n.name] = same_process.get(n.name, 0) + 1
        load[n.name] = load.get(n.name, 0) + 1
        cpu_used[n.name] = cpu_used.get(n.name, 0.0) + process.cpu
        mem_used[n.name] = mem_used.get(n.name, 0) + process.memory
        heapq.heappush(heap, (*rank(n), i))
    if len(chosen) == count:
        return chosen, ""
    if process.memory and all(n.memory - mem_used.get(n.name, 0) < process.memory for n in matching):
        return chosen, f"no node has {format_memory(process.memory, exact=True)} free memory"
    return chosen, f"no node has {process.cpu:g} cpu free"
