"""Applying, changing, deleting and reviving apps: generation, resource_version, atomicity."""
import threading

import pytest

from corral.store.base import Conflict, StoreError


def doc(name="hello", instances=1, labels=None, digest="sha256:src1", **extra):
    return {"name": name, "labels": labels or {"team": "web"}, "source_digest": digest,
            "spec": {"processes": {"web": {"command": "serve", "instances": instances}},
                     "source": "./hello"}, **extra}


def take_lease(store, holder="r1"):
    return store.acquire_lease("leader", holder, ttl=60).epoch


def test_first_apply_creates_at_generation_1(store):
    [result] = store.apply_apps([doc()], actor="cli")
    assert (result.name, result.action, result.generation) == ("hello", "created", 1)
    app = store.get_app("hello")
    assert (app.generation, app.resource_version, app.deleting) == (1, 1, False)
    assert app.spec["processes"]["web"]["instances"] == 1
    assert app.labels == {"team": "web"} and app.status == {} and app.owner is None


def test_same_doc_twice_is_unchanged_and_writes_nothing(store):
    store.apply_apps([doc()], actor="cli")
    before_app, before_version = store.get_app("hello"), store.apps_version()
    before_events = store.list_events()
    [result] = store.apply_apps([doc()], actor="cli")
    assert (result.action, result.generation) == ("unchanged", 1)
    assert store.get_app("hello") == before_app
    assert store.apps_version() == before_version
    assert store.list_events() == before_events


def test_key_order_does_not_make_a_change(store):
    store.apply_apps([doc()], actor="cli")
    reordered = doc()
    reordered["spec"] = dict(reversed(list(reordered["spec"].items())))
    assert store.apply_apps([reordered], actor="cli")[0].action == "unchanged"


@pytest.mark.parametrize("change", [
    pytest.param({"instances": 3}, id="spec"),
    pytest.param({"labels": {"team": "ops"}}, id="labels"),
    pytest.param({"digest": "sha256:src2"}, id="source"),
])
def test_a_change_bumps_generation_and_resource_version_by_one(store, change):
    store.apply_apps([doc()], actor="cli")
    version = store.apps_version()
    [result] = store.apply_apps([doc(**change)], actor="cli")
    assert (result.action, result.generation) == ("configured", 2)
    app = store.get_app("hello")
    assert (app.generation, app.resource_version) == (2, 2)
    assert store.apps_version() > version
    assert [e.reason for e in store.list_events(kind="app", name="hello")] == ["Created", "Configured"]


def test_batch_with_a_failing_document_writes_nothing(store):
    store.apply_apps([doc("kept")], actor="cli")
    version = store.apps_version()
    broken = doc("broken")
    broken["name"] = None  # refused by the database (NOT NULL), after "fresh" was written
    with pytest.raises(StoreError):
        store.apply_apps([doc("fresh"), doc("kept", instances=5), broken], actor="cli")
    assert [a.name for a in store.list_apps()] == ["kept"]
    assert store.get_app("kept").generation == 1
    assert store.apps_version() == version
    assert [e.name for e in store.list_events()] == ["kept"]


def test_dry_run_reports_but_writes_nothing(store):
    store.apply_apps([doc("old")], actor="cli")
    version = store.apps_version()
    results = store.apply_apps([doc("old", instances=2), doc("new"), doc("same")], actor="cli",
                               dry_run=True)
    assert [(r.name, r.action, r.generation) for r in results] == [
        ("old", "configured", 2), ("new", "created", 1), ("same", "created", 1)]
    assert [a.name for a in store.list_apps()] == ["old"]
    assert store.get_app("old").generation == 1
    assert store.apps_version() == version


def test_list_apps_sorted_by_name(store):
    store.apply_apps([doc("zeta"), doc("alpha"), doc("mid")], actor="cli")
    assert [a.name for a in store.list_apps()] == ["alpha", "mid", "zeta"]


def test_list_apps_of_names_reads_those_that_exist_sorted_however_many_are_asked(store):
    store.apply_apps([doc("zeta"), doc("alpha"), doc("mid")], actor="cli")
    assert [a.name for a in store.list_apps(names=["zeta", "gone", "alpha"])] == ["alpha", "zeta"]
    assert store.list_apps(names=[]) == []
    many = [f"app-{i:04d}" for i in range(1200)] + ["mid"]   # more than one IN list holds
    assert [a.name for a in store.list_apps(names=many)] == ["mid"]


def test_owner_is_recorded(store):
    store.apply_apps([doc(owner="gitsource/infra@abc123")], actor="gitsync")
    assert store.get_app("hello").owner == "gitsource/infra@abc123"


def test_delete_then_apply_revives(store):
    store.apply_apps([doc()], actor="cli")
    assert store.mark_app_deleting("hello", actor="cli") is True
    deleting = store.get_app("hello")
    assert deleting.deleting and deleting.generation == 1 and deleting.resource_version == 2
    assert store.mark_app_deleting("hello", actor="cli") is True  # again: no further write
    assert store.get_app("hello").resource_version == 2
    [result] = store.apply_apps([doc()], actor="cli")
    assert (result.action, result.generation) == ("configured", 2)
    assert store.get_app("hello").deleting is False


def test_delete_of_missing_app_is_false(store):
    assert store.mark_app_deleting("ghost", actor="cli") is False


def test_status_bumps_resource_version_not_generation(store):
    store.apply_apps([doc()], actor="cli")
    epoch = take_lease(store)
    version = store.apps_version()
    store.set_app_status("hello", {"observedGeneration": 1, "conditions": []}, epoch)
    app = store.get_app("hello")
    assert app.status == {"observedGeneration": 1, "conditions": []}
    assert (app.generation, app.resource_version) == (1, 2)
    assert store.apps_version() > version
    # the same status again is no write
    store.set_app_status("hello", {"conditions": [], "observedGeneration": 1}, epoch)
    assert store.get_app("hello").resource_version == 2


def test_status_does_not_make_the_next_apply_a_change(store):
    store.apply_apps([doc()], actor="cli")
    store.set_app_status("hello", {"ready": 1}, take_lease(store))
    assert store.apply_apps([doc()], actor="cli")[0].action == "unchanged"


def test_status_of_missing_app_is_a_conflict(store):
    with pytest.raises(Conflict, match="ghost"):
        store.set_app_status("ghost", {}, take_lease(store))


def test_purge_removes_the_app(store):
    store.apply_apps([doc("a"), doc("b")], actor="cli")
    version = store.apps_version()
    store.purge_app("a", take_lease(store))
    assert store.get_app("a") is None
    assert [a.name for a in store.list_apps()] == ["b"]
    assert store.apps_version() > version


def one_owner(mine):
    """A ``refuse`` as the route rule is: the first stored app other than ``mine`` owns the one host."""
    def refuse(stored):
        rivals = [a.name for a in stored if a.name != mine]
        return f"the host is already routed to app {rivals[0]}" if rivals else None
    return refuse


def test_a_refusal_writes_nothing_and_says_why(store):
    store.apply_apps([doc("a")], actor="cli")
    version = store.apps_version()
    with pytest.raises(Conflict, match="already routed to app a"):
        store.apply_apps([doc("b")], actor="cli", refuse=one_owner("b"))
    assert [a.name for a in store.list_apps()] == ["a"] and store.apps_version() == version


def test_two_applies_racing_for_one_host_cannot_both_pass(store, open_twin):
    """Apply a's rule runs while a holds the apps lock; b, started from inside it, waits for a's
    commit, and its rule then sees a."""
    other, b_done, b_outcome, b_held_back = open_twin(), threading.Event(), {}, []

    def apply_b():
        try:
            b_outcome["result"] = other.apply_apps([doc("b")], actor="b", refuse=one_owner("b"))
        except Conflict as e:
            b_outcome["refused"] = str(e)
        b_done.set()

    def refuse_a(stored):
        threading.Thread(target=apply_b, daemon=True).start()
        b_held_back.append(not b_done.wait(0.5))   # b cannot decide while a decides
        return one_owner("a")(stored)

    store.apply_apps([doc("a")], actor="a", refuse=refuse_a)
    assert b_done.wait(30), "b never finished"
    assert b_held_back == [True], "b decided while a held the apps lock"
    assert b_outcome == {"refused": "the host is already routed to app a"}
    assert [a.name for a in store.list_apps()] == ["a"]
