"""What one pass means beside its plan (reconciler.outcome, pure): the table it leaves, its events,
the nodes touched, the statuses that changed, and the one definition of a current row."""
from types import SimpleNamespace

from reconciler.model import DesiredApp, DesiredProcess, DesiredRow, NodeView, ObservedInstance, READY, is_current
from reconciler.outcome import Prepared, outcome
from reconciler.planner import Plan, Stop

SPEC = {"command": ["serve"], "env": {}}
IMAGE = "sha256:" + "a" * 64


def row(iid, node, image=IMAGE):
    return DesiredRow(id=iid, app="hello", process="web", node=node, revision="1", image=image, spec=SPEC,
                      created_at=0.0)


def prepared(count=1, status=None):
    app = DesiredApp(name="hello", deleting=False, revision="1", image=IMAGE,
                     processes=(DesiredProcess("web", count, SPEC),), max_unavailable=0)
    rec = SimpleNamespace(name="hello", deleting=False, generation=2, status=status or {})
    build = SimpleNamespace(state="succeeded", image=IMAGE, error=None)
    return Prepared(rec, app, build, "h1")


def test_the_table_events_and_touched_nodes_follow_the_plan():
    old, kept, new = row("hello-web-a", "n1"), row("hello-web-b", "n2"), row("hello-web-c", "n3")
    result = Plan(boot=(new,), stop=(Stop(old.id, "scaled down to 1"),), purge=("gone",))
    out = outcome([prepared()], [old, kept], [old, kept], result, [], [], 10.0, "reconciler/r1")
    assert out.after == (kept, new)
    assert out.touched == {"n1", "n3"}
    assert [(e[1], e[2]) for e in out.table_events] == [("hello", "Scheduled"), ("hello", "Stopping"),
                                                        ("gone", "Deleted")]


def test_a_status_is_written_only_when_it_changes_and_a_completed_rollout_is_said_once():
    r = row("hello-web-a", "n1")
    seen = [ObservedInstance(id=r.id, node="n1", app="hello", state="running", ready=True, ready_since=0.0)]
    nodes = [NodeView(name="n1", state=READY)]
    first = outcome([prepared()], [r], [r], Plan(), seen, nodes, 10.0, "r1")
    status = first.statuses["hello"]
    assert status["ready"] == status["updated"] == 1
    assert [e[2] for e in first.status_events] == ["RolloutComplete"]
    again = outcome([prepared(status=status)], [r], [r], Plan(), seen, nodes, 10.0, "r1")
    assert again.statuses == {} and again.status_events == ()


def test_a_row_on_a_draining_node_is_old_for_the_planner_and_for_the_status_alike():
    app = prepared().app
    r = row("hello-web-a", "n1")
    assert is_current(r, app) and not is_current(r, app, draining={"n1"})
    assert not is_current(row("hello-web-b", "n2", image="sha256:" + "b" * 64), app)
    seen = [ObservedInstance(id=r.id, node="n1", app="hello", state="running", ready=True, ready_since=0.0)]
    nodes = [NodeView(name="n1", state=READY, draining=True)]
    out = outcome([prepared()], [r], [r], Plan(), seen, nodes, 10.0, "r1")
    progressing = {c["type"]: c for c in out.statuses["hello"]["conditions"]}["Progressing"]
    assert out.statuses["hello"]["updated"] == 0 and progressing["reason"] == "Rolling"


def test_an_app_whose_status_cannot_be_worked_out_is_named_and_the_others_go_on():
    good = prepared()
    broken = Prepared(SimpleNamespace(name="broken", deleting=False, generation=1, status={}), good.app,
                      SimpleNamespace(), "h")   # a build record without a state
    out = outcome([broken, good], [], [], Plan(), [], [], 10.0, "r1")
    assert set(out.failed) == {"broken"} and "hello" in out.statuses
