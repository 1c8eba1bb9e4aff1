"""The scheduler's placements (reconciler/scheduler.py) against the rule they implement, scanned
plainly: each placement takes the fitting node of least (instances of this process there when the
app spreads, instances of any app, name); nodes must be ready and match the selector."""
from hypothesis import given, settings, strategies as st

from reconciler.model import CORDONED, READY, DesiredApp, DesiredProcess, NodeView
from reconciler.scheduler import Candidates, Tally, place_many


def scanned(app, process, count, nodes, same, load, cpu, memory):
    """Every node ranked at every placement: the rule, at O(nodes) a placement."""
    same, load, cpu, memory = dict(same), dict(load), dict(cpu), dict(memory)
    matching = [n for n in nodes if n.state == READY and all(dict(n.labels).get(k) == v for k, v in app.node_selector)]
    chosen = []
    for _ in range(count):
        fitting = [n for n in matching
                   if (not process.cpu or n.cpu - cpu.get(n.name, 0.0) >= process.cpu - 1e-9)
                   and (not process.memory or n.memory - memory.get(n.name, 0) >= process.memory)]
        if not fitting:
            break
        best = min(fitting, key=lambda n: (same.get(n.name, 0) if app.spread else 0, load.get(n.name, 0), n.name))
        chosen.append(best.name)
        same[best.name] = same.get(best.name, 0) + 1
        load[best.name] = load.get(best.name, 0) + 1
        cpu[best.name] = cpu.get(best.name, 0.0) + process.cpu
        memory[best.name] = memory.get(best.name, 0) + process.memory
    return chosen


node_names = [f"n{i}" for i in range(8)]


@settings(max_examples=400, deadline=None)
@given(caps=st.lists(st.tuples(st.sampled_from([READY, READY, READY, CORDONED]), st.sampled_from(["a", "b"]),
                               st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=8),
       placed=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 1), st.integers(0, 1)), max_size=12),
       released=st.lists(st.integers(0, 11), max_size=4),
       held=st.dictionaries(st.sampled_from(node_names), st.integers(1, 3), max_size=4),
       calls=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 1), st.booleans(),
                                st.sampled_from([(), (("zone", "a"),)])), min_size=1, max_size=4))
def test_placements_are_the_ones_a_scan_of_every_node_makes(caps, placed, released, held, calls):
    nodes = [NodeView(f"n{i}", state, labels=(("zone", zone),), cpu=float(c), memory=m)
             for i, (state, zone, c, m) in enumerate(caps)]
    tally, candidates = Tally(), Candidates(nodes)
    rows = [(f"n{i % len(nodes)}", float(c), m) for i, c, m in placed]
    for node, c, m in rows:
        tally.add(node, 1, c, m)
    for j in released:   # stops: load goes down as well as up between placements
        if j < len(rows):
            node, c, m = rows[j]
            tally.add(node, -1, c, m)
    for count, c, m, spread, selector in calls:
        app = DesiredApp("a", False, "1", "img", (), node_selector=selector, spread=spread)
        process = DesiredProcess("web", count, {}, cpu=float(c), memory=m)
        same = {k: v for k, v in held.items()}
        want = scanned(app, process, count, nodes, same, tally.load, tally.cpu, tally.memory)
        got, reason = place_many(app, process, count, candidates, same, tally)
        assert got == want
        assert (reason == "") == (len(got) == count)
