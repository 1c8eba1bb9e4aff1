"""A reconciler's duties, each called as its green thread would call it, over a real SQLite
store, a real git repository and a bound bus: what a report enqueues and records, and how
GitSources go through their own work queue (synced once when due, retried after a backoff)."""
import pytest

from corral.settings import Timings
from corral.stopping import Stop
from reconciler.daemon import Reconciler
from reconciler.loop import ALL
from tests.integration.test_gitops_sync import APP, Repo, add_source
from tests.support import fresh_store, free_port

KEY = b"k" * 32


def report(seq, state="running", restarts=0, app="x"):
    return {"node": {"name": "node-1", "address": "127.0.0.1", "labels": {},
                     "capacity": {"cpu": 2, "memory": 8 << 30, "disk": 10 << 30},
                     "conditions": [], "load": [0.1, 0.1, 0.1], "version": "0.1", "rejected_messages": {}},
            "epoch_seen": 1, "started_at": 100.0, "seq": seq,
            "instances": [{"id": f"{app}-web-1", "app": app, "process": "web", "state": state, "ready": True,
                           "pid": 42, "restarts": restarts, "started_at": 101.0}]}


@pytest.fixture
def reconciler(tmp_path):
    with fresh_store("sqlite", str(tmp_path)) as store:
        r = Reconciler(name="r1", store=store, key=KEY, bus=f"tcp://127.0.0.1:{free_port()}",
                       git_dir=str(tmp_path / "git"), stop=Stop())
        try:
            yield r
        finally:
            r.close()


def test_a_new_node_enqueues_everything_and_a_changed_instance_only_its_app(reconciler):
    reconciler.on_report(report(1))
    assert reconciler.work.take(0.0) == [ALL]
    reconciler.on_report(report(2))   # nothing new: nothing to do
    assert reconciler.work.take(0.0) == []
    reconciler.on_report(report(3, state="failed"))
    assert reconciler.work.take(0.0) == ["x"]


def test_as_leader_a_restart_seen_in_reports_becomes_an_event_in_the_store(reconciler):
    reconciler.on_report(report(1))
    reconciler.on_report(report(2, state="failed", restarts=1))
    assert not reconciler.pending_events, "a follower writes no instance events"
    assert reconciler.lease.tick() is not None
    reconciler.on_report(report(3, state="backoff", restarts=2))
    assert reconciler.write_events() == 1 and not reconciler.pending_events
    [event] = reconciler.store.list_events(kind="app", name="x")
    assert "instance x-web-1 on node node-1" in event.message and event.actor == "r1"


def test_a_gitsource_due_is_synced_once_and_one_that_fails_waits_for_its_backoff(reconciler, tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("one.yaml", APP.format(name="one", instances=1))
    repo.commit("one app")
    add_source(reconciler.store, repo)
    epoch = reconciler.lease.tick()
    assert reconciler.gitops_pass(epoch) == ["fleet"]
    assert reconciler.store.get_app("one") is not None
    assert reconciler.gitops_pass(epoch) == [], "synced, and not due again before its interval"
    reconciler.store.request_gitsource_sync("fleet")
    assert reconciler.gitops_pass(epoch + 1) == [], "a deposed epoch syncs nothing"
    assert reconciler.sources.failures("fleet") == 1
    assert reconciler.gitops_pass(epoch) == [], "the failed source waits for its backoff"


def test_as_leader_events_past_their_retention_are_pruned(tmp_path):
    with fresh_store("sqlite", str(tmp_path)) as store:
        r = Reconciler(name="r1", store=store, key=KEY, bus=f"tcp://127.0.0.1:{free_port()}",
                       git_dir=str(tmp_path / "git"), stop=Stop(),
                       timings=Timings(event_max=3, event_retention=3600))
        try:
            store.add_events([("app", "x", "Scheduled", f"step {i}", "r1") for i in range(5)])
            assert r.prune() == 2
            assert [e.message for e in store.list_events()] == ["step 2", "step 3", "step 4"]
        finally:
            r.close()
