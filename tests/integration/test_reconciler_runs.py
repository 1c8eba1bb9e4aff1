"""The loop's shell for runs, against real stores (SQLite and PostgreSQL): a due slot becomes a run
row and its instance before the node is sent anything; a second leader after it, at any instant,
never starts that slot again; a stale leader writes no run and sends nothing; a finished run is
recorded with its exit code and its instance leaves the assignment."""
import pytest

from corral.store import Fenced
from reconciler.loop import ALL
from tests.integration.test_reconciler_loop import IMAGE, built_app, controller, report, store  # noqa: F401

T0 = 1767225600.0   # a 10 s slot boundary
SPEC = {"source": "./x", "processes": {
    "web": {"command": "serve", "instances": 1},
    "tick": {"command": "tick", "schedule": "every 10s", "instances": 0, "restart": "never"}}}


def lead(store, holder="r1"):
    return store.acquire_lease("leader", holder, ttl=600).epoch


def scheduled_app(store):
    built_app(store, SPEC)
    store.write_transaction(lambda cur: cur.execute("UPDATE apps SET applied_at = ?", (T0 + 0.5,)))


def assigned(bus, node="n1"):
    return [[i["id"] for i in body["instances"]] for peer, body, _ in bus.sent if peer == node]


def test_a_due_slot_is_one_run_written_before_it_is_sent(store):
    scheduled_app(store)
    ctl, bus, observed, clock = controller(store, now=T0 + 1, reports=("n1",))
    epoch = lead(store)
    ctl.sync(epoch, [ALL])
    assert store.list_runs() == []  # the first slot (T0 + 10) is not due yet
    clock.t = T0 + 10.2
    observed.record(report("n1", epoch_seen=epoch), clock.t)  # the node still reports
    ctl.sync(epoch, [ALL])
    (run,) = store.list_runs()
    assert (run.slot, run.state, run.node, run.kind) == (T0 + 10, "pending", "n1", "schedule")
    assert run.id in {d.id for d in store.list_desired()}
    assert any(run.id in ids for ids in assigned(bus))
    ctl.sync(epoch, [ALL])  # again at the same instant: nothing new
    assert len(store.list_runs()) == 1


@pytest.mark.parametrize("takeover", [T0 + 10.2, T0 + 19.999])
def test_a_new_leader_at_any_instant_never_starts_a_slot_again(store, takeover):
    scheduled_app(store)
    first, _, _, _ = controller(store, now=T0 + 10.1, reports=("n1",))
    first.sync(lead(store), [ALL])
    store.release_lease("leader", "r1")
    second, _, _, _ = controller(store, now=takeover, reports=("n1",))
    second.sync(lead(store, "r2"), [ALL])
    assert [r.slot for r in store.list_runs()] == [T0 + 10]


def test_a_stale_leader_writes_no_run_and_sends_nothing(store):
    scheduled_app(store)
    stale = lead(store)
    store.release_lease("leader", "r1")
    lead(store, "r2")
    ctl, bus, _, _ = controller(store, now=T0 + 10.5, reports=("n1",))
    with pytest.raises(Fenced):
        ctl.sync(stale, [ALL])
    assert store.list_runs() == [] and bus.sent == []


def one_run_started(store):
    """A leader that has started the run of slot T0 + 10: ``(controller, bus, observed, clock, epoch, run)``."""
    scheduled_app(store)
    ctl, bus, observed, clock = controller(store, now=T0 + 10.1, reports=("n1",))
    epoch = lead(store)
    ctl.sync(epoch, [ALL])
    (run,) = store.list_runs()
    return ctl, bus, observed, clock, epoch, run


def test_a_finished_run_is_recorded_and_leaves_the_assignment(store):
    ctl, bus, observed, clock, epoch, run = one_run_started(store)
    body = report("n1", epoch_seen=epoch)
    body["instances"] = [{"id": run.id, "app": "hello", "process": "tick", "state": "stopped", "ready": False,
                          "exit_code": 0, "started_at": T0 + 10.3, "message": "exited with code 0"}]
    observed.record(body, T0 + 11)
    clock.t = T0 + 11
    ctl.sync(epoch, [ALL])
    (done,) = store.list_runs()
    assert (done.state, done.exit_code, done.started_at, done.finished_at) == ("succeeded", 0, T0 + 10.3, T0 + 11)
    assert run.id not in {d.id for d in store.list_desired()}
    assert run.id not in assigned(bus)[-1]
    assert any(e.reason == "RunSucceeded" for e in store.list_events("app", "hello"))


def test_the_runs_of_an_app_gone_are_pruned_by_a_full_sync(store):
    ctl, _, _, _, epoch, run = one_run_started(store)
    store.purge_app("hello", epoch)
    ctl.sync(epoch, [ALL])   # its run is ended, its instance goes, and its row is pruned
    assert store.list_runs() == [] and store.list_desired() == []
    assert any(e.reason == "RunFailed" and run.id in e.message for e in store.list_events("app", "hello"))
