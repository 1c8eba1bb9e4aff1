"""plan_runs(): one pass of the leader over runs, scenario by scenario."""
import itertools

from corral.spec import validate_document
from corral.store.base import AppRecord, DesiredInstance, RunRecord
from reconciler.model import LOST, READY, NodeView
from reconciler.runplan import plan_runs
from reconciler.agent_specs import desired_app

IMG = "sha256:" + "a" * 64
T0 = 1767225600  # 2026-01-01T00:00:00Z


def record(name="job", deleting=False, applied_at=T0, **procs):
    doc = validate_document({"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": name},
                             "spec": {"source": ".", "processes": procs or {
                                 "tick": {"command": "tick", "schedule": "every 10s"}}}})
    return AppRecord(name=name, labels={}, spec=doc["spec"], source_digest="", generation=1, resource_version=1,
                     deleting=deleting, status={}, created_at=T0, updated_at=T0, applied_at=applied_at)


def pair(rec, image=IMG):
    return rec, desired_app(rec, image, "1")


def nodes(*names, state=READY):
    return [NodeView(name=n, state=state, cpu=4, memory=1 << 33) for n in names]


def ids():
    counter = itertools.count(1)
    return lambda a, p: f"{a}-{p}-{next(counter)}"


def run(rid, state, slot=None, node="n1", kind="schedule", started=None, **kw):
    return RunRecord(id=rid, app="job", process="tick", slot=slot, kind=kind, state=state, node=node,
                     started_at=started, created_at=T0, **kw)


def row(rid, node="n1"):
    return DesiredInstance(id=rid, app="job", process="tick", node=node, revision="1", image=IMG,
                           spec={"command": ["tick"]}, created_at=T0)


def test_a_due_slot_becomes_a_run_and_its_instance_with_its_slot_in_env():
    p = plan_runs([pair(record())], [], [], nodes("n1"), {}, T0 + 12, ids())
    assert [(r.id, r.slot, r.state, r.node) for r in p.write] == [("job-tick-1", T0 + 10, "pending", "n1")]
    (boot,) = p.boot
    assert boot.id == "job-tick-1" and boot.spec["run"] is True and boot.spec["restart"] == "never"
    assert boot.spec["env"]["CORRAL_SLOT"] == str(T0 + 10) and boot.spec["env"]["CORRAL_RUN"] == "job-tick-1"
    assert [e[2] for e in p.events] == ["RunStarted"]


def test_a_slot_that_has_a_run_is_never_started_again():
    runs = [run("r1", "running", slot=T0 + 10)]
    p = plan_runs([pair(record())], runs, [row("r1")], nodes("n1"), {"n1": [{"id": "r1", "state": "running"}]},
                  T0 + 19, ids())
    assert p.boot == () and p.write == ()


def test_no_image_yet_keeps_the_slot_due():
    p = plan_runs([pair(record(), image=None)], [], [], nodes("n1"), {}, T0 + 12, ids())
    assert p.write == () and p.boot == ()


def test_no_node_keeps_the_slot_and_the_later_ones_due():
    p = plan_runs([pair(record())], [], [], nodes("n1", state=LOST), {}, T0 + 25, ids())
    assert p.write == () and [u.reason for u in p.unplaced] == ["no node is ready"]


def test_a_finished_run_records_its_exit_and_its_instance_goes():
    runs = [run("r1", "running", slot=T0 + 10, started=T0 + 10.5)]
    report = {"n1": [{"id": "r1", "state": "failed", "exit_code": 2, "message": "exited with code 2"}]}
    p = plan_runs([pair(record())], runs, [row("r1")], nodes("n1"), report, T0 + 15, ids())
    (done,) = p.write
    assert (done.state, done.exit_code, done.finished_at) == ("failed", 2, T0 + 15)
    assert p.stop == ("r1",) and p.events[0][2] == "RunFailed" and "after 4.5s" in p.events[0][3]


def test_a_run_on_a_lost_node_fails_and_is_not_started_elsewhere():
    runs = [run("r1", "running", slot=T0 + 10, started=T0 + 10)]
    p = plan_runs([pair(record())], runs, [row("r1")], nodes("n1", state=LOST) + nodes("n2"), {}, T0 + 15, ids())
    assert [(r.id, r.state) for r in p.write] == [("r1", "failed")]
    assert "never started twice" in p.write[0].message and p.boot == ()


def test_a_run_whose_instance_row_is_gone_fails():
    runs = [run("r1", "pending", slot=T0 + 10)]
    p = plan_runs([pair(record())], runs, [], nodes("n1"), {}, T0 + 15, ids())
    assert [(r.id, r.state) for r in p.write] == [("r1", "failed")]


def test_forbid_skips_a_slot_while_a_run_is_active_with_a_row_and_an_event():
    rec = record(tick={"command": "tick", "schedule": "every 10s", "concurrency": "forbid"})
    runs = [run("r1", "running", slot=T0 + 10, started=T0 + 10)]
    p = plan_runs([pair(rec)], runs, [row("r1")], nodes("n1"), {"n1": [{"id": "r1", "state": "running"}]},
                  T0 + 20, ids())
    assert [(r.slot, r.state) for r in p.write] == [(T0 + 20, "skipped")] and p.boot == ()
    assert p.events[0][2] == "RunSkipped"


def test_active_deadline_stops_a_run():
    rec = record(tick={"command": "tick", "schedule": "every 1h", "activeDeadline": "30s"})
    runs = [run("r1", "running", slot=T0, started=T0 + 1)]
    p = plan_runs([pair(rec)], runs, [row("r1")], nodes("n1"), {"n1": [{"id": "r1", "state": "running"}]},
                  T0 + 40, ids())
    assert [(r.id, r.state) for r in p.write] == [("r1", "failed")] and p.stop == ("r1",)
    assert "activeDeadline of 30s" in p.write[0].message


def test_requested_trigger_and_one_off_start_and_a_one_off_runs_its_own_command():
    runs = [run("t1", "requested", kind="trigger", node=None),
            run("o1", "requested", kind="oneoff", node=None, command=["python", "-V"])]
    p = plan_runs([pair(record(applied_at=T0 + 5))], runs, [], nodes("n1"), {}, T0 + 6, ids())
    assert sorted((r.id, r.state) for r in p.write) == [("o1", "pending"), ("t1", "pending")]
    spec = {b.id: b.spec for b in p.boot}
    assert spec["o1"]["command"] == ["python", "-V"] and spec["t1"]["command"] == ["tick"]


def test_runs_of_a_deleted_app_stop_and_their_rows_go():
    runs = [run("r1", "running", slot=T0 + 10, started=T0 + 10), run("r0", "succeeded", slot=T0)]
    p = plan_runs([pair(record(deleting=True))], runs, [row("r1")], nodes("n1"), {}, T0 + 12, ids())
    assert [(r.id, r.state) for r in p.write] == [("r1", "failed")] and p.stop == ("r1",)
    gone = plan_runs([], runs[1:], [], nodes("n1"), {}, T0 + 12, ids())
    assert gone.prune == ("r0",)


def test_history_is_pruned_to_its_limits():
    rec = record(tick={"command": "tick", "schedule": "every 10s", "history": {"succeeded": 1, "failed": 0}})
    runs = [run(f"s{i}", "succeeded", slot=T0 + i) for i in range(3)] + [run("f", "failed", slot=T0 - 5)]
    p = plan_runs([pair(rec)], runs, [], nodes("n1"), {}, T0 + 5, ids())
    assert p.prune == ("f", "s0", "s1")
