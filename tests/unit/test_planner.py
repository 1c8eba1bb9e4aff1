"""The planner, scenario by scenario (one test per situation, named for it),
plus properties that must hold for any input."""
import itertools

from hypothesis import given, settings, strategies as st

from corral.store.base import DesiredInstance
from reconciler.model import LOST, READY, UNREACHABLE, CORDONED, DesiredApp, DesiredProcess, NodeView, ObservedInstance
from reconciler.planner import plan

SPEC = {"command": ["python", "app.py"], "env": {}, "port": True, "restart": "always",
        "drainPeriod": 2.0, "stopGracePeriod": 30.0, "resources": {}, "health": None}
IMG = "sha256:" + "a" * 64
IMG2 = "sha256:" + "b" * 64


def app(name="hello", count=2, image=IMG, spec=SPEC, deleting=False, revision="1", selector=(), spread=True,
        cpu=0.0, memory=0, processes=None):
    procs = processes or (DesiredProcess("web", count, spec, cpu=cpu, memory=memory),)
    return DesiredApp(name=name, deleting=deleting, revision=revision, image=image,
                      processes=procs, node_selector=selector, spread=spread)


def row(iid, node, app_name="hello", process="web", image=IMG, spec=SPEC, revision="1", created_at=0.0):
    return DesiredInstance(id=iid, app=app_name, process=process, node=node, revision=revision,
                           image=image, spec=spec, created_at=created_at)


def nodes(*names, state=READY, **kw):
    return [NodeView(name=n, state=state, **kw) for n in names]


def running(*rows, ready=True):
    return [ObservedInstance(id=r.id, node=r.node, app=r.app, state="running", ready=ready) for r in rows]


def ids():
    counter = itertools.count(1)
    return lambda a, p: f"{a}-{p}-{next(counter):04x}"


def buckets(result):
    """(boots as node names sorted, stop ids sorted, purges)"""
    return (sorted(r.node for r in result.boot), sorted(s.id for s in result.stop), list(result.purge))


def test_new_app_boots_one_instance_per_node():
    result = plan([app(count=2)], [], [], nodes("n1", "n2"), ids())
    assert buckets(result) == (["n1", "n2"], [], [])
    assert {r.id for r in result.boot} == {"hello-web-0001", "hello-web-0002"}
    assert all(r.image == IMG and r.revision == "1" and r.spec == SPEC for r in result.boot)


def test_converged_app_plans_nothing():
    rows = [row("a", "n1"), row("b", "n2")]
    assert plan([app(count=2)], rows, running(*rows), nodes("n1", "n2"), ids()).empty


def test_scale_up_spreads_onto_the_emptier_node():
    rows = [row("a", "n1"), row("b", "n2"), row("c", "n1")]
    result = plan([app(count=4)], rows, running(*rows), nodes("n1", "n2"), ids())
    assert buckets(result) == (["n2"], [], [])


def test_scale_down_stops_not_ready_first_then_newest():
    rows = [row("a", "n1", created_at=1), row("b", "n2", created_at=2), row("c", "n1", created_at=3),
            row("d", "n2", created_at=4)]
    observed = running(rows[0], rows[1], rows[3]) + running(rows[2], ready=False)
    result = plan([app(count=2)], rows, observed, nodes("n1", "n2"), ids())
    assert buckets(result) == ([], ["c", "d"], [])


def test_scale_to_zero_stops_everything():
    rows = [row("a", "n1"), row("b", "n2")]
    assert buckets(plan([app(count=0)], rows, running(*rows), nodes("n1", "n2"), ids())) == ([], ["a", "b"], [])


def test_no_image_yet_boots_nothing_and_keeps_what_runs():
    rows = [row("a", "n1")]
    result = plan([app(count=3, image=None)], rows, running(*rows), nodes("n1", "n2"), ids())
    assert result.empty


def test_new_revision_boots_within_the_default_surge_and_keeps_old_until_new_ready():
    """2 instances, defaults 25%/25%: surge 1 (rounded up), unavailable 0 (rounded down)."""
    rows = [row("a", "n1"), row("b", "n2")]
    result = plan([app(count=2, image=IMG2, revision="2")], rows, running(*rows), nodes("n1", "n2"), ids())
    assert buckets(result) == (["n1"], [], [])
    assert all(r.revision == "2" and r.image == IMG2 for r in result.boot)


def test_new_revision_stops_old_once_new_all_ready():
    old = [row("a", "n1"), row("b", "n2")]
    new = [row("c", "n1", image=IMG2, revision="2"), row("d", "n2", image=IMG2, revision="2")]
    result = plan([app(count=2, image=IMG2, revision="2")], old + new, running(*old, *new), nodes("n1", "n2"), ids())
    assert buckets(result) == ([], ["a", "b"], [])


def test_new_revision_keeps_old_while_new_is_not_ready():
    old = [row("a", "n1"), row("b", "n2")]
    new = [row("c", "n1", image=IMG2, revision="2")]
    observed = running(*old) + running(*new, ready=False)
    assert plan([app(count=2, image=IMG2, revision="2")], old + new, observed, nodes("n1", "n2"), ids()).empty


def test_env_change_is_a_new_revision_but_scaling_is_not():
    changed = dict(SPEC, env={"GREETING": "hi"})
    rows = [row("a", "n1")]
    result = plan([app(count=1, spec=changed, revision="2")], rows, running(*rows), nodes("n1"), ids())
    assert buckets(result) == (["n1"], [], [])
    assert plan([app(count=1)], rows, running(*rows), nodes("n1"), ids()).empty


def test_unreachable_node_keeps_its_instances_counted():
    rows = [row("a", "n1"), row("b", "n2")]
    ns = [NodeView("n1", UNREACHABLE), NodeView("n2", READY), NodeView("n3", READY)]
    assert plan([app(count=2)], rows, running(rows[1]), ns, ids()).empty


def test_lost_node_instances_are_replaced_elsewhere():
    rows = [row("a", "n1"), row("b", "n2")]
    ns = [NodeView("n1", LOST), NodeView("n2", READY), NodeView("n3", READY)]
    result = plan([app(count=2)], rows, running(rows[1]), ns, ids())
    assert buckets(result) == (["n3"], ["a"], [])
    assert "lost" in result.stop[0].reason


def test_node_unknown_to_everyone_counts_as_lost():
    rows = [row("a", "gone")]
    result = plan([app(count=1)], rows, [], nodes("n1"), ids())
    assert buckets(result) == (["n1"], ["a"], [])


def test_cordoned_node_gets_nothing_new_but_keeps_what_it_runs():
    rows = [row("a", "n1")]
    ns = [NodeView("n1", CORDONED), NodeView("n2", READY)]
    result = plan([app(count=2)], rows, running(*rows), ns, ids())
    assert buckets(result) == (["n2"], [], [])


def test_deleting_app_stops_all_then_is_purged_when_nothing_runs():
    rows = [row("a", "n1"), row("b", "n2")]
    result = plan([app(deleting=True)], rows, running(*rows), nodes("n1", "n2"), ids())
    assert buckets(result) == ([], ["a", "b"], [])
    still_stopping = [ObservedInstance("a", "n1", "hello", "stopping", False)]
    assert buckets(plan([app(deleting=True)], [], still_stopping, nodes("n1", "n2"), ids())) == ([], [], [])
    gone = [ObservedInstance("a", "n1", "hello", "stopped", False)]
    assert buckets(plan([app(deleting=True)], [], gone, nodes("n1", "n2"), ids())) == ([], [], ["hello"])


def test_rows_of_unknown_app_and_removed_process_are_stopped():
    rows = [row("a", "n1", app_name="ghost"), row("b", "n1", process="worker")]
    result = plan([app(count=0)], rows, [], nodes("n1"), ids())
    assert buckets(result) == ([], ["a", "b"], [])


def test_no_ready_node_leaves_instances_unplaced_with_reason():
    result = plan([app(count=2)], [], [], nodes("n1", state=UNREACHABLE), ids())
    assert result.boot == ()
    assert result.unplaced[0].reason == "no node is ready"
    assert result.unplaced[0].missing == 2


def test_node_selector_filters_and_says_which_label():
    ns = [NodeView("n1", READY, labels=(("zone", "a"),)), NodeView("n2", READY, labels=(("zone", "b"),))]
    result = plan([app(count=2, selector=(("zone", "b"),))], [], [], ns, ids())
    assert buckets(result) == (["n2", "n2"], [], [])
    result = plan([app(count=1, selector=(("zone", "c"),))], [], [], ns, ids())
    assert result.unplaced[0].reason == "no ready node matches zone=c"


def test_memory_requests_respect_capacity():
    ns = [NodeView("n1", READY, memory=1 << 30), NodeView("n2", READY, memory=3 << 30)]
    result = plan([app(count=3, memory=1 << 30)], [], [], ns, ids())
    assert buckets(result) == (["n1", "n2", "n2"], [], [])
    result = plan([app(count=1, memory=4 << 30)], [], [], ns, ids())
    assert result.unplaced[0].reason == "no node has 4Gi free memory"


def test_plan_is_deterministic_and_does_not_mutate_inputs():
    apps_ = [app(count=3)]
    rows = [row("a", "n2")]
    before = (list(apps_), list(rows))
    one = plan(apps_, rows, running(*rows), nodes("n1", "n2", "n3"), ids())
    two = plan(apps_, rows, running(*rows), nodes("n1", "n2", "n3"), ids())
    assert one == two
    assert (apps_, rows) == before


@settings(max_examples=200, deadline=None)
@given(count=st.integers(0, 6), n_nodes=st.integers(1, 4),
       existing=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=8),
       lost=st.sets(st.integers(0, 3)))
def test_property_scaling_keeps_exactly_count_and_nothing_on_lost_nodes(count, n_nodes, existing, lost):
    """Without a new revision, the rows after the plan are exactly ``count`` when
    a node is ready, never more; nothing is left on a lost node; and with
    enough ready nodes, no node gets two new instances of the process."""
    names = [f"n{i}" for i in range(n_nodes)]
    ns = [NodeView(n, LOST if i in lost else READY) for i, n in enumerate(names)]
    rows = [row(f"r{i}", names[node % n_nodes]) for i, (node, _) in enumerate(existing)]
    observed = [ObservedInstance(r.id, r.node, r.app, "running", ready)
                for r, (_, ready) in zip(rows, existing)]
    result = plan([app(count=count)], rows, observed, ns, ids())
    stopped = {s.id for s in result.stop}
    after = [r for r in rows if r.id not in stopped] + list(result.boot)
    assert len(after) <= count or not result.boot
    if any(n.state == READY for n in ns):
        assert len(after) == count
    assert not [r for r in after if r.node in {n.name for n in ns if n.state == LOST}]
    ready = [n for n in ns if n.state == READY]
    if count <= len(ready):
        booted_nodes = [r.node for r in result.boot]
        assert len(booted_nodes) == len(set(booted_nodes))
