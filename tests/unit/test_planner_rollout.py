"""The planner through scenarios (a table: one row per situation, named for it),
then simulated rollouts and drains checked pass by pass against the invariants
of maxSurge and maxUnavailable."""
import dataclasses
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from corral.store.base import DesiredInstance
from reconciler.model import LOST, READY, UNREACHABLE, CORDONED, DesiredApp, DesiredProcess, NodeView, ObservedInstance
from reconciler.planner import plan
from reconciler.rollout import limits, progress, rolling_step

SPEC = {"command": ["python", "app.py"], "env": {}, "port": True, "restart": "always",
        "drainPeriod": 2.0, "stopGracePeriod": 30.0, "resources": {}, "health": None}
OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def app(count=2, image=NEW, surge="25%", unavailable="25%", min_ready=0.0, failed=False, selector=(),
        memory=0, revision="2"):
    return DesiredApp(name="hello", deleting=False, revision=revision, image=image,
                      processes=(DesiredProcess("web", count, SPEC, memory=memory),),
                      node_selector=selector, max_surge=surge, max_unavailable=unavailable,
                      min_ready=min_ready, rollout_failed=failed)


def row(iid, node, image=NEW, created_at=0.0):
    return DesiredInstance(id=iid, app="hello", process="web", node=node, revision="2" if image == NEW else "1",
                           image=image, spec=SPEC, created_at=created_at)


def olds(*nodes_):
    return [row(f"old{i}", n, image=OLD, created_at=i) for i, n in enumerate(nodes_)]


def news(*nodes_):
    return [row(f"new{i}", n, created_at=100 + i) for i, n in enumerate(nodes_)]


def up(rows, ready=True, since=0.0):
    return [ObservedInstance(r.id, r.node, r.app, "running", ready, since if ready else None) for r in rows]


def ready_nodes(n, **kw):
    return [NodeView(f"n{i}", READY, **kw) for i in range(1, n + 1)]


def ids():
    counter = itertools.count(1)
    return lambda a, p: f"{a}-{p}-{next(counter):04x}"


# (id, app, desired rows, observed, nodes, now, expected boots (node names), expected stop ids)
SCENARIOS = [
    ("ScaleUp", app(count=3, image=OLD), olds("n1"), up(olds("n1")), ready_nodes(3), 0,
     ["n2", "n3"], []),
    ("ScaleDown_Partial", app(count=1, image=OLD), olds("n1", "n2", "n3"), up(olds("n1", "n2")), ready_nodes(3), 0,
     [], ["old1", "old2"]),
    ("LostNode_Replace", app(count=2, image=OLD), olds("n1", "n2"), up(olds("n2")),
     [NodeView("n1", LOST), NodeView("n2", READY), NodeView("n3", READY)], 0, ["n3"], ["old0"]),
    ("LostNode_Returns_KillsStale", app(count=2, image=OLD), olds("n2", "n3")[:2],
     up(olds("n2", "n3")) + [ObservedInstance("stale", "n1", "hello", "running", True, 0.0)], ready_nodes(3), 0,
     [], []),
    ("Unreachable_Blip_ChangesNothing", app(count=2, image=OLD), olds("n1", "n2"), up(olds("n2")),
     [NodeView("n1", UNREACHABLE), NodeView("n2", READY), NodeView("n3", READY)], 0, [], []),
    ("Rolling_MaxSurge1_MaxUnavailable0_Start", app(count=3, surge=1, unavailable=0), olds("n1", "n2", "n3"),
     up(olds("n1", "n2", "n3")), ready_nodes(3), 0, ["n1"], []),
    ("Rolling_MaxSurge1_MaxUnavailable0_NewNotReady", app(count=3, surge=1, unavailable=0),
     olds("n1", "n2", "n3") + news("n1"), up(olds("n1", "n2", "n3")) + up(news("n1"), ready=False),
     ready_nodes(3), 0, [], []),
    ("Rolling_MaxSurge1_MaxUnavailable0_NewReady", app(count=3, surge=1, unavailable=0),
     olds("n1", "n2", "n3") + news("n1"), up(olds("n1", "n2", "n3") + news("n1")), ready_nodes(3), 0,
     ["n2"], ["old0"]),
    ("Rolling_MaxSurge0_MaxUnavailable1_StopsFirst", app(count=3, surge=0, unavailable=1),
     olds("n1", "n2", "n3"), up(olds("n1", "n2", "n3")), ready_nodes(3), 0, ["n1"], ["old0"]),
    ("Rolling_Percent_WorkedExample_10", app(count=10),
     olds(*[f"n{i}" for i in range(1, 11)]), up(olds(*[f"n{i}" for i in range(1, 11)])), ready_nodes(10), 0,
     ["n1", "n2", "n10", "n3", "n4"], ["old0", "old1"]),  # freed nodes first, then by name
    ("Rolling_MinReady_NotYet", app(count=2, surge=1, unavailable=0, min_ready=10),
     olds("n1", "n2") + news("n1"), up(olds("n1", "n2")) + up(news("n1"), since=95.0), ready_nodes(2), 100,
     [], []),
    ("Rolling_MinReady_Passed", app(count=2, surge=1, unavailable=0, min_ready=10),
     olds("n1", "n2") + news("n1"), up(olds("n1", "n2")) + up(news("n1"), since=85.0), ready_nodes(2), 100,
     ["n2"], ["old0"]),
    # A reconciler that has just started (and now leads) saw every instance ready a moment ago: none is
    # available for minReady yet, but the ready old ones serve and must not all be stopped at once.
    ("Rolling_TakenOverByFreshReconciler_ReadyOldStay", app(count=3, surge=1, unavailable=0, min_ready=10),
     olds("n1", "n2", "n3"), up(olds("n1", "n2", "n3"), since=100.0), ready_nodes(3), 100, ["n1"], []),
    ("Rolling_BrokenOldGoesFirst", app(count=2, surge=1, unavailable=0),
     olds("n1", "n2"), up(olds("n1", "n2"), ready=False), ready_nodes(2), 0, ["n1", "n2"], ["old0", "old1"]),
    ("Rolling_Stuck_DeadlineExceeded", app(count=2, surge=1, unavailable=0, failed=True),
     olds("n1", "n2") + news("n1"), up(olds("n1", "n2") + news("n1")), ready_nodes(2), 0, [], []),
    ("Rolling_Failed_LostNode_ReplacesEachAtItsRevision", app(count=2, surge=1, unavailable=0, failed=True),
     olds("n1", "n2") + news("n1"), up(olds("n2")),
     [NodeView("n1", LOST), NodeView("n2", READY), NodeView("n3", READY)], 0, ["n2", "n3"], ["old0", "new0"]),
    ("Rolling_Failed_LostNode_NowhereToGo", app(count=2, surge=1, unavailable=0, failed=True),
     olds("n1", "n2") + news("n2"), up(olds("n2") + news("n2")),
     [NodeView("n1", LOST), NodeView("n2", CORDONED)], 0, [], ["old0"]),
    ("Drain_RespectsUnavailable", app(count=2, image=OLD, surge=1, unavailable=0),
     olds("n1", "n2"), up(olds("n1", "n2")),
     [NodeView("n1", CORDONED, draining=True), NodeView("n2", READY), NodeView("n3", READY)], 0, ["n3"], []),
    ("Drain_ReplacementReady_OldStops", app(count=2, image=OLD, surge=1, unavailable=0),
     olds("n1", "n2") + [row("new0", "n3", image=OLD)], up(olds("n1", "n2") + [row("new0", "n3", image=OLD)]),
     [NodeView("n1", CORDONED, draining=True), NodeView("n2", READY), NodeView("n3", READY)], 0, [], ["old0"]),
    ("Drain_NowhereToGo_StaysPut", app(count=2, image=OLD, surge=1, unavailable=0),
     olds("n1", "n2"), up(olds("n1", "n2")),
     [NodeView("n1", CORDONED, draining=True), NodeView("n2", CORDONED)], 0, [], []),
    ("NoFit_StaysPending", app(count=1, image=OLD, memory=2 << 30), [], [],
     ready_nodes(2, memory=1 << 30), 0, [], []),
]


@pytest.mark.parametrize("the_app,rows,observed,ns,now,boots,stops",
                         [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_scenario(the_app, rows, observed, ns, now, boots, stops):
    result = plan([the_app], rows, observed, ns, ids(), now=now)
    assert sorted(r.node for r in result.boot) == sorted(boots)
    assert sorted(s.id for s in result.stop) == sorted(stops)


def test_failed_rollout_replaces_lost_instances_with_their_own_revisions():
    """The rollout stopped at 1 old + 1 new (new not ready): losing the node of both
    boots one old and one new elsewhere, spread; no other row stops, nothing more rolls."""
    rows = olds("n1", "n2") + news("n1")
    ns = [NodeView("n1", LOST), NodeView("n2", READY), NodeView("n3", READY)]
    observed = up(olds("n2"))
    result = plan([app(count=2, surge=1, unavailable=0, failed=True)], rows, observed, ns, ids(), now=5.0)
    assert sorted((r.revision, r.image, r.node, r.created_at) for r in result.boot) == [
        ("1", OLD, "n2", 5.0), ("2", NEW, "n3", 5.0)]
    assert [s.reason for s in result.stop] == ["node n1 is lost", "node n1 is lost"]
    after = [r for r in rows if r.node != "n1"] + list(result.boot)
    assert plan([app(count=2, surge=1, unavailable=0, failed=True)], after, observed, ns, ids(), now=6.0).empty


def test_no_fit_says_why():
    result = plan([app(count=1, memory=2 << 30)], [], [], ready_nodes(2, memory=1 << 30), ids())
    assert [(u.missing, u.reason) for u in result.unplaced] == [(1, "no node has 2Gi free memory")]
    result = plan([app(count=1, selector=(("zone", "b"),))], [], [], ready_nodes(2), ids())
    assert result.unplaced[0].reason == "no ready node matches zone=b"


def test_drain_stop_reason_names_the_node():
    ns = [NodeView("n1", CORDONED, draining=True), NodeView("n2", READY), NodeView("n3", READY)]
    rows = olds("n1", "n2") + [row("new0", "n3", image=OLD)]
    result = plan([app(count=2, image=OLD, surge=1, unavailable=0)], rows, up(rows), ns, ids())
    assert [s.reason for s in result.stop] == ["node n1 is draining"]


# -- progress deadline --------------------------------------------------------
def test_progress_starts_a_clock_on_a_new_revision_and_restarts_it_on_change():
    rec, failed = progress(None, "2", 1, 0, False, now=100, deadline=60)
    assert (rec["since"], failed) == (100, False)
    rec, failed = progress(rec, "2", 1, 0, False, now=150, deadline=60)
    assert (rec["since"], failed) == (100, False)
    rec, failed = progress(rec, "2", 2, 1, False, now=159, deadline=60)
    assert (rec["since"], failed) == (159, False)


def test_progress_deadline_exceeded_fails_and_stays_failed_until_a_new_revision():
    rec, _ = progress(None, "2", 1, 0, False, now=0, deadline=60)
    rec, failed = progress(rec, "2", 1, 0, False, now=61, deadline=60)
    assert failed and rec["failed"]
    rec, failed = progress(rec, "2", 2, 2, True, now=70, deadline=60)
    assert failed
    rec, failed = progress(rec, "3", 0, 0, False, now=80, deadline=60)
    assert not failed and rec["since"] == 80


def test_progress_complete_never_fails():
    rec, _ = progress(None, "2", 2, 2, True, now=0, deadline=1)
    assert progress(rec, "2", 2, 2, True, now=1000, deadline=1) == (rec, False)


def test_rolling_step_with_nothing_old_is_plain_scaling():
    assert rolling_step(3, 1, 0, [], [], lambda r: True).boot == 3


# -- simulated rollouts, pass by pass ------------------------------------------
def simulate(the_app, rows, ns, ready_after, passes=60):
    """Run plan -> apply -> observe until nothing is left to do; yields
    (rows before, result, rows after, observed) per pass. A row booted at pass
    k reports ready from pass k + ``ready_after(row)`` on; the first rows are ready."""
    ready_from = {r.id: -1 for r in rows}
    make = ids()
    for step in range(passes):
        observed = [ObservedInstance(r.id, r.node, r.app, "running", ready_from[r.id] <= step,
                                     0.0 if ready_from[r.id] <= step else None) for r in rows]
        result = plan([the_app], rows, observed, ns, make, now=float(step))
        stopped = {s.id for s in result.stop}
        after = [r for r in rows if r.id not in stopped] + list(result.boot)
        yield rows, result, after, observed
        if result.empty and all(o.ready for o in observed):
            return
        for r in result.boot:
            ready_from[r.id] = step + 1 + ready_after(r)
        rows = after
    raise AssertionError(f"no convergence after {passes} passes")


scale = st.one_of(st.integers(0, 3), st.sampled_from(["0%", "25%", "50%", "100%"]))


@settings(max_examples=150, deadline=None)
@given(count=st.integers(1, 8), n_nodes=st.integers(1, 6), surge=scale, unavailable=scale,
       lag=st.integers(0, 2), data=st.data())
def test_property_rollout_bounds_hold_every_pass_and_converge(count, n_nodes, surge, unavailable, lag, data):
    """From ``count`` old instances, all available, to the new revision, while new
    instances become ready some passes after boot: never more than count +
    maxSurge rows; never fewer available than count - maxUnavailable; each plan
    deterministic; a plan applied to its own result (same reports) is empty;
    it ends with exactly ``count`` new rows and no old one."""
    ns = ready_nodes(n_nodes)
    the_app = app(count=count, surge=surge, unavailable=unavailable)
    max_surge, max_unavailable = limits(the_app, count)
    rows = olds(*[f"n{1 + i % n_nodes}" for i in range(count)])
    slow = data.draw(st.integers(0, 3))  # one of the new instances takes longer

    def ready_after(r):
        return lag + (slow if r.id.endswith("0001") else 0)

    final = None
    for before, result, after, observed in simulate(the_app, rows, ns, ready_after):
        assert len(after) <= count + max_surge
        ready_ids = {o.id for o in observed if o.ready}
        assert len([r for r in after if r.id in ready_ids]) >= count - max_unavailable
        again = plan([the_app], before, observed, ns, ids(), now=0.0)
        assert [s.id for s in again.stop] == [s.id for s in result.stop]
        assert [r.node for r in again.boot] == [r.node for r in result.boot]
        assert plan([the_app], after, observed, ns, ids()).empty
        final = after
    assert sorted(r.image for r in final) == [NEW] * count


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 6), n_nodes=st.integers(2, 5), unavailable=st.integers(0, 2))
def test_property_drain_never_goes_below_availability_and_empties_the_node(count, n_nodes, unavailable):
    """Draining n1: its instances move to other nodes without the process ever
    having fewer than count - maxUnavailable available, and n1 ends empty."""
    ns = [NodeView("n1", CORDONED, draining=True)] + [NodeView(f"n{i}", READY) for i in range(2, n_nodes + 1)]
    the_app = app(count=count, image=OLD, surge=1, unavailable=unavailable)
    rows = olds(*[f"n{1 + i % n_nodes}" for i in range(count)])
    final = None
    for _, _, after, observed in simulate(the_app, rows, ns, lambda r: 0):
        ready_ids = {o.id for o in observed if o.ready}
        assert len([r for r in after if r.id in ready_ids]) >= count - min(unavailable, count)
        final = after
    assert len(final) == count and not [r for r in final if r.node == "n1"]


@settings(max_examples=150, deadline=None)
@given(count=st.integers(1, 6), n_nodes=st.integers(2, 6), data=st.data())
def test_property_failed_rollout_still_replaces_what_a_lost_node_held(count, n_nodes, data):
    """A rollout that missed its deadline, stopped at some mix of old and new rows,
    loses some nodes (one at least stays ready): the plan drops exactly the rows
    on lost nodes, boots as many of each revision as were lost (room is ample),
    none on a lost node, stops nothing else; applied to its result it is empty."""
    n_new = data.draw(st.integers(1, count), label="new rows")
    n_old = data.draw(st.integers(1, count), label="old rows")
    names = [f"n{i}" for i in range(1, n_nodes + 1)]
    lost = set(data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=n_nodes - 1, unique=True),
                         label="lost nodes"))
    ns = [NodeView(n, LOST if n in lost else READY) for n in names]
    rows = olds(*[names[i % n_nodes] for i in range(n_old)]) + news(*[names[(i + 1) % n_nodes] for i in range(n_new)])
    observed = up([r for r in rows if r.node not in lost and r.image == OLD])
    the_app = app(count=count, surge=n_old + n_new, unavailable=0, failed=True)

    result = plan([the_app], rows, observed, ns, ids(), now=1.0)
    gone = [r for r in rows if r.node in lost]
    assert sorted(s.id for s in result.stop) == sorted(r.id for r in gone)
    assert sorted(r.image for r in result.boot) == sorted(r.image for r in gone)
    assert not [r for r in result.boot if r.node in lost]
    after = [r for r in rows if r.node not in lost] + list(result.boot)
    assert plan([the_app], after, observed, ns, ids(), now=2.0).empty


def test_plan_does_not_mutate_its_inputs():
    rows = olds("n1", "n2")
    observed = up(rows)
    ns = ready_nodes(2)
    frozen = (list(rows), list(observed), list(ns))
    plan([app(count=2)], rows, observed, ns, ids())
    assert (rows, observed, ns) == frozen
    assert all(dataclasses.is_dataclass(r) for r in rows)
