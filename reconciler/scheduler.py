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
import collections
import heapq

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


class Tally:
    """What one plan has put on each node so far: instances (``load``), cpu and memory requested.

    Every change goes through :meth:`add`, which also tells the plan's queues of least-loaded
    nodes (one per node selector, made by :meth:`queue` when first asked): a placement then
    looks at the few nodes at the front of a queue, not at every node."""

    def __init__(self):
        self.load, self.cpu, self.memory = collections.Counter(), collections.Counter(), collections.Counter()
        self._queues = {}   # selector as sorted pairs -> _Queue

    def add(self, node, sign, cpu, memory):
        """Count one instance more (``sign`` 1) or less (-1) on ``node``, with its requests."""
        self.load[node] += sign
        self.cpu[node] += sign * cpu
        self.memory[node] += sign * memory
        for queue in self._queues.values():
            queue.changed(node, self.load[node])

    def queue(self, key, names):
        """The :class:`_Queue` of the nodes ``names`` (those matching selector ``key``)."""
        found = self._queues.get(key)
        if found is None:
            found = self._queues[key] = _Queue(names, self.load)
        return found


class _Queue:
    """Nodes by (instances, name), least first, as a heap whose entries a change of load leaves
    stale: a change pushes a fresh entry, and an entry whose load is no longer the node's is
    dropped when it comes to the front."""

    def __init__(self, names, load):
        self.index = {name: i for i, name in enumerate(names)}
        self.heap = [(load.get(name, 0), name, i) for i, name in enumerate(names)]
        heapq.heapify(self.heap)

    def changed(self, name, load):
        i = self.index.get(name)
        if i is not None:
            heapq.heappush(self.heap, (load, name, i))


def place_many(app, process, count, candidates, same_process, tally):
    """Choose nodes for ``count`` new instances of ``app``/``process``, one after another.

    ``candidates``: the plan's :class:`Candidates`; ``tally``: the plan's :class:`Tally`, counted
    on for each placement, so the next one sees it. ``same_process``: node -> instances of this
    process there (counted on too). Returns ``(nodes chosen, reason)``: fewer than ``count``
    nodes with the reason the rest fit nowhere, or all of them with reason "". Equal inputs give
    equal answers.

    Each placement takes the fitting node of least rank (instances of this process there when
    the app spreads, instances of any app, name). A node without this process has rank (0, load,
    name), ahead of every node with it, so the front of the selector's queue of least-loaded
    nodes gives the answer while one fits; only then are the nodes already holding the process
    ranked, a heap of their own (few: as many as its instances). Nodes passed over in the queue
    (holding the process, or full for it) are put back at the end of the call. A placement costs
    O(log nodes), and a plan of 50,000 instances on 5,000 nodes no longer ranks every node for
    every process. A node that does not fit now will not fit later in this call either
    (allocations only grow).
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
    queue = tally.queue(tuple(sorted(selector.items())), candidates.matching_names(selector))
    load = tally.load
    spread = same_process if app.spread else {}

    def fits(n):
        return ((not process.cpu or n.cpu - tally.cpu.get(n.name, 0.0) >= process.cpu - 1e-9)
                and (not process.memory or n.memory - tally.memory.get(n.name, 0) >= process.memory))

    crowded = [(spread[name], load.get(name, 0), name, queue.index[name])
               for name in spread if spread[name] > 0 and name in queue.index]
    heapq.heapify(crowded)
    chosen, aside = [], []
    while len(chosen) < count:
        i = _emptiest(queue, spread, load, lambda i: fits(matching[i]), aside)
        if i is None:
            i = _least_crowded(crowded, spread, load, lambda i: fits(matching[i]))
            if i is None:
                break
        name = matching[i].name
        chosen.append(name)
        same_process[name] = same_process.get(name, 0) + 1
        tally.add(name, 1, process.cpu, process.memory)
        if app.spread:
            heapq.heappush(crowded, (spread[name], load[name], name, i))
    for entry in aside:
        heapq.heappush(queue.heap, entry)
    if len(chosen) == count:
        return chosen, ""
    if process.memory and all(n.memory - tally.memory.get(n.name, 0) < process.memory for n in matching):
        return chosen, f"no node has {format_memory(process.memory, exact=True)} free memory"
    return chosen, f"no node has {process.cpu:g} cpu free"


def _emptiest(queue, spread, load, fits, aside):
    """The index of the least-loaded fitting node of ``queue`` that holds none of the process
    (``spread``), taken off the queue; None when there is none. Nodes passed over go to ``aside``."""
    while queue.heap:
        entry = heapq.heappop(queue.heap)
        count, name, i = entry
        if count != load.get(name, 0):
            continue   # stale: a fresh entry for this node is in the queue
        if spread.get(name, 0) or not fits(i):
            aside.append(entry)
            continue
        return i
    return None


def _least_crowded(crowded, spread, load, fits):
    """The index of the fitting node of least (instances of the process, load, name) among those
    that hold it (``crowded``, a heap); None when none fits."""
    while crowded:
        held, count, name, i = heapq.heappop(crowded)
        if (held, count) != (spread[name], load.get(name, 0)):   # its rank grew since it was pushed
            heapq.heappush(crowded, (spread[name], load.get(name, 0), name, i))
            continue
        if fits(i):
            return i
    return None
