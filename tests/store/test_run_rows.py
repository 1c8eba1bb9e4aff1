"""Runs in the store, on both backends: a slot has one run, ever; the leader's run
writes are fenced and land whole or not at all."""
import threading

import pytest

from corral.store.base import Conflict, DesiredInstance, Fenced, RunRecord, StoreError


def run(rid="r1", slot=1000, state="pending", node="node-1", kind="schedule", process="report", **kw):
    return RunRecord(id=rid, app="hello", process=process, slot=slot, kind=kind, state=state, node=node,
                     created_at=5.0, actor="reconciler/r1", **kw)


def instance(rid="r1"):
    return DesiredInstance(id=rid, app="hello", process="report", node="node-1", revision="1",
                           image="sha256:img", spec={"command": ["report"], "restart": "never"}, created_at=5.0)


@pytest.fixture
def epoch(store):
    return store.acquire_lease("leader", "r1", ttl=60).epoch


def test_a_run_and_its_instance_land_together(store, epoch):
    store.write_runs(epoch, runs=[run()], boot=[instance()],
                     events=[("app", "hello", "RunStarted", "run r1 of slot 1000", "reconciler/r1")])
    assert store.list_runs() == [run()]
    assert [d.id for d in store.list_desired()] == ["r1"]
    assert store.list_events("app", "hello")[-1].reason == "RunStarted"


def test_a_slot_has_one_run_ever(store, epoch):
    store.write_runs(epoch, runs=[run()], boot=[instance()])
    with pytest.raises(Conflict, match="slot 1000 of hello/report already has run r1"):
        store.write_runs(epoch, runs=[run("r2"), run("r3", slot=2000)], boot=[instance("r2")])
    assert [r.id for r in store.list_runs()] == ["r1"]
    assert [d.id for d in store.list_desired()] == ["r1"]


def test_the_unique_constraint_holds_without_the_check(store, epoch):
    """The table itself refuses a second run of a slot, whatever the code above it does."""
    store.write_runs(epoch, runs=[run()])

    def sneak(cur):
        cur.execute("INSERT INTO runs (id, app, process, slot, kind, state, created_at, actor) "
                    "VALUES ('r2', 'hello', 'report', 1000, 'schedule', 'pending', 1.0, 'x')")
    with pytest.raises(StoreError):
        store.write_transaction(sneak)
    one_offs = [run(f"o{i}", slot=None, kind="oneoff", process="report") for i in range(2)]
    store.write_runs(epoch, runs=one_offs)  # runs without a slot never collide
    assert len(store.list_runs()) == 3


def test_a_stale_leader_writes_no_run(store, epoch):
    store.release_lease("leader", "r1")
    store.acquire_lease("leader", "r2", ttl=60)
    with pytest.raises(Fenced):
        store.write_runs(epoch, runs=[run()], boot=[instance()])
    assert store.list_runs() == [] and store.list_desired() == []


def test_updates_finish_and_prune(store, epoch):
    store.write_runs(epoch, runs=[run(), run("r2", slot=2000)], boot=[instance(), instance("r2")])
    done = run(state="succeeded", exit_code=0, started_at=6.0, finished_at=7.5, message="exited 0")
    store.write_runs(epoch, runs=[done], stop=["r1"], prune=["r2"])
    assert store.list_runs() == [done]
    assert [d.id for d in store.list_desired()] == ["r2"]
    assert store.list_runs(run_id="r1") == [done] and store.list_runs(app="other") == []


def test_requested_runs_are_audited(store):
    asked = store.request_run(run("o1", slot=None, kind="oneoff", state="x", node=None, command=["python", "-V"]),
                              ("app", "hello", "RunRequested", "one-off run o1: python -V", "cli/alice"))
    assert asked.state == "requested" and asked.command == ["python", "-V"] and asked.created_at > 5.0
    assert store.list_runs() == [asked]
    assert store.list_events("app", "hello")[-1].actor == "cli/alice"


def test_two_leaders_racing_for_one_slot_write_it_once(store, open_twin, epoch):
    """The deposed leader and the new one both try the slot at once: one run, one instance."""
    twin = open_twin()
    outcomes = []

    def old():
        try:
            store.write_runs(epoch, runs=[run("old")], boot=[instance("old")])
            outcomes.append("old")
        except (Fenced, Conflict):
            outcomes.append("old refused")

    t = threading.Thread(target=old)
    store.release_lease("leader", "r1")
    new_epoch = twin.acquire_lease("leader", "r2", ttl=60).epoch
    t.start()
    try:
        twin.write_runs(new_epoch, runs=[run("new")], boot=[instance("new")])
        outcomes.append("new")
    except Conflict:
        outcomes.append("new refused")
    t.join()
    assert sorted(outcomes) == ["new", "old refused"]
    assert [r.id for r in store.list_runs()] == ["new"]


def test_applied_at_moves_on_a_change_only(store):
    doc = {"name": "hello", "labels": {}, "spec": {"processes": {}}, "source_digest": "sha256:s"}
    store.apply_apps([doc], "cli")
    first = store.get_app("hello")
    assert first.applied_at == first.created_at
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.set_app_status("hello", {"x": 1}, epoch)
    assert store.get_app("hello").applied_at == first.applied_at
    store.apply_apps([{**doc, "labels": {"a": "b"}}], "cli")
    assert store.get_app("hello").applied_at > first.applied_at
