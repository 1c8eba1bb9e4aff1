"""GitSources in the store, and a source's sync as one fenced transaction: ownership,
prune of owned apps only, no take-over, status with the commit (both backends)."""
import pytest

from corral.store.base import Conflict, Fenced


def app(name, instances=1, owner=None):
    out = {"name": name, "labels": {}, "source_digest": "sha256:src1",
           "spec": {"processes": {"web": {"command": "serve", "instances": instances}}, "source": "./s"}}
    if owner:
        out["owner"] = owner
    return out


def source(name="fleet", url="/repo", branch="main"):
    return {"name": name, "labels": {}, "spec": {"url": url, "branch": branch}}


def lead(store):
    return store.acquire_lease("leader", "r1", ttl=60).epoch


def test_gitsource_apply_creates_then_is_unchanged_then_configured(store):
    [r] = store.apply_apps([], actor="cli", gitsources=[source()])
    assert (r.kind, r.name, r.action, r.generation) == ("GitSource", "fleet", "created", 1)
    assert store.apply_apps([], actor="cli", gitsources=[source()])[0].action == "unchanged"
    [r] = store.apply_apps([], actor="cli", gitsources=[source(branch="prod")])
    assert (r.action, r.generation) == ("configured", 2)
    rec = store.get_gitsource("fleet")
    assert rec.spec["branch"] == "prod" and rec.status == {} and rec.sync_requested_at is None
    assert [s.name for s in store.list_gitsources()] == ["fleet"]


def test_apps_and_sources_of_one_apply_land_together_or_not_at_all(store):
    results = store.apply_apps([app("a")], actor="cli", gitsources=[source()], dry_run=True)
    assert [(r.kind, r.action) for r in results] == [("App", "created"), ("GitSource", "created")]
    assert store.get_app("a") is None and store.get_gitsource("fleet") is None


def test_sync_request_is_stamped_and_unknown_source_says_none(store):
    store.apply_apps([], actor="cli", gitsources=[source()])
    when = store.request_gitsource_sync("fleet")
    assert when and store.get_gitsource("fleet").sync_requested_at == when
    assert store.request_gitsource_sync("nope") is None


def test_sync_applies_with_owner_prunes_only_owned_apps_and_sets_status(store):
    epoch = lead(store)
    store.apply_apps([app("hand")], actor="cli", gitsources=[source()])
    results, pruned = store.sync_gitsource("fleet", epoch, [app("a", owner="gitsource/fleet@c1")], [],
                                           {"syncedCommit": "c1"}, actor="gitsource/fleet")
    assert [(r.name, r.action) for r in results] == [("a", "created")] and pruned == []
    assert store.get_app("a").owner == "gitsource/fleet@c1"
    # "hand" is named for prune, but this source does not own it: it survives.
    _, pruned = store.sync_gitsource("fleet", epoch, [], ["a", "hand", "missing"], {"syncedCommit": "c2"},
                                     actor="gitsource/fleet")
    assert pruned == ["a"]
    assert store.get_app("a").deleting and not store.get_app("hand").deleting
    assert store.get_gitsource("fleet").status == {"syncedCommit": "c2"}
    assert "Pruned" in [e.reason for e in store.list_events(kind="app", name="a")]


def test_sync_never_takes_over_another_sources_app(store):
    epoch = lead(store)
    store.apply_apps([app("x", owner="gitsource/other@c9")], actor="gitsource/other", gitsources=[source()])
    before = store.apps_version()
    with pytest.raises(Conflict, match="owned by gitsource/other"):
        store.sync_gitsource("fleet", epoch, [app("y", owner="gitsource/fleet@c1"),
                                              app("x", 5, owner="gitsource/fleet@c1")], [],
                             {"syncedCommit": "c1"}, actor="gitsource/fleet")
    assert store.get_app("y") is None and store.get_app("x").owner == "gitsource/other@c9"
    assert store.apps_version() == before and store.get_gitsource("fleet").status == {}


def test_sync_by_a_deposed_leader_writes_nothing(store):
    epoch = lead(store)
    store.apply_apps([], actor="cli", gitsources=[source()])
    store.release_lease("leader", "r1")
    store.acquire_lease("leader", "r2", ttl=60)
    with pytest.raises(Fenced):
        store.sync_gitsource("fleet", epoch, [app("a", owner="gitsource/fleet@c1")], [], {}, actor="x")
    with pytest.raises(Fenced):
        store.set_gitsource_status("fleet", {"lastError": "x"}, epoch)
    assert store.get_app("a") is None and store.get_gitsource("fleet").status == {}


def test_hand_apply_of_an_owned_app_keeps_its_owner(store):
    epoch = lead(store)
    store.apply_apps([], actor="cli", gitsources=[source()])
    store.sync_gitsource("fleet", epoch, [app("a", owner="gitsource/fleet@c1")], [], {}, actor="gitsource/fleet")
    [r] = store.apply_apps([app("a", instances=3)], actor="cli")
    assert r.action == "configured"
    rec = store.get_app("a")
    assert rec.owner == "gitsource/fleet@c1" and rec.spec["processes"]["web"]["instances"] == 3


def test_sync_adopts_an_equal_hand_applied_app_without_a_new_generation(store):
    epoch = lead(store)
    store.apply_apps([app("a")], actor="cli", gitsources=[source()])
    [r], _ = store.sync_gitsource("fleet", epoch, [app("a", owner="gitsource/fleet@c1")], [], {},
                                  actor="gitsource/fleet")
    rec = store.get_app("a")
    assert (r.action, rec.generation, rec.owner) == ("unchanged", 1, "gitsource/fleet@c1")
    assert [e.reason for e in store.list_events(kind="app", name="a")] == ["Created", "Adopted"]


def synced_fleet(store):
    """Source "fleet" owning apps a and b (b already being deleted), another source owning o, and a hand app."""
    epoch = lead(store)
    store.apply_apps([app("hand")], actor="cli", gitsources=[source(), source("other")])
    store.sync_gitsource("fleet", epoch, [app("a", owner="gitsource/fleet@c1"), app("b", owner="gitsource/fleet@c1")],
                         [], {}, actor="gitsource/fleet")
    store.sync_gitsource("other", epoch, [app("o", owner="gitsource/other@c7")], [], {}, actor="gitsource/other")
    store.mark_app_deleting("b", actor="cli")
    return epoch


def test_deleting_a_source_releases_its_apps_to_hand_management(store):
    epoch = synced_fleet(store)
    before = store.apps_version()
    assert store.delete_gitsource("fleet", cascade=False, actor="cli") == ["a"]
    assert store.get_gitsource("fleet") is None and store.apps_version() > before
    a = store.get_app("a")
    assert a.owner is None and not a.deleting
    assert [e.reason for e in store.list_events(kind="app", name="a")][-1] == "Released"
    assert store.get_app("o").owner == "gitsource/other@c7" and not store.get_app("hand").deleting
    assert "Deleted" in [e.reason for e in store.list_events(kind="gitsource", name="fleet")]
    # Released means by hand: a later sync of a new source of that name does not prune it.
    store.apply_apps([], actor="cli", gitsources=[source()])
    _, pruned = store.sync_gitsource("fleet", epoch, [], ["a"], {}, actor="gitsource/fleet")
    assert pruned == [] and not store.get_app("a").deleting


def test_deleting_a_source_with_cascade_deletes_only_its_apps(store):
    synced_fleet(store)
    assert store.delete_gitsource("fleet", cascade=True, actor="cli") == ["a"]
    assert store.get_app("a").deleting and store.get_app("b").deleting
    assert not store.get_app("o").deleting and not store.get_app("hand").deleting
    assert store.get_gitsource("other") is not None


def test_deleting_a_missing_source_says_none_and_writes_nothing(store):
    synced_fleet(store)
    before = store.apps_version()
    assert store.delete_gitsource("nope", cascade=True, actor="cli") is None
    assert store.apps_version() == before


def test_a_sync_after_its_source_was_deleted_writes_nothing(store):
    epoch = synced_fleet(store)
    store.delete_gitsource("fleet", cascade=False, actor="cli")
    with pytest.raises(Conflict, match="was deleted"):
        store.sync_gitsource("fleet", epoch, [app("z", owner="gitsource/fleet@c2")], ["a"], {"syncedCommit": "c2"},
                             actor="gitsource/fleet")
    assert store.get_app("z") is None and store.get_app("a").owner is None and not store.get_app("a").deleting
