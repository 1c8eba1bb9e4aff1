"""The pure GitOps plan: what one commit means for the apps a source owns."""
import pytest

from reconciler.gitops.plan import (
    OUT_OF_SYNC, SYNCED, Live, Source, Wanted, app_differences, differences, is_due, plan_sync,
)

C1, C2 = "1" * 40, "2" * 40
MINE = f"gitsource/fleet@{C1}"


def spec(instances=1, **extra):
    return {"source": "./src", "processes": {"web": {"command": "serve", "instances": instances, "port": False}},
            **extra}


def want(name, instances=1, digest="sha256:a"):
    return Wanted(name, {}, spec(instances), digest, f"apps/{name}.yaml")


def live(name, instances=1, owner=MINE, deleting=False, digest="sha256:a"):
    return Live(name, {}, spec(instances), digest, owner, deleting)


def names(docs):
    return sorted(d["name"] for d in docs)


def test_new_apps_are_created_with_the_source_and_commit_as_owner():
    plan = plan_sync(Source("fleet"), C1, [want("a"), want("b")], [], None)
    assert names(plan.apply) == ["a", "b"] and plan.prune == () and plan.refused is None
    assert {d["owner"] for d in plan.apply} == {MINE}
    assert [(s.name, s.state) for s in plan.apps] == [("a", SYNCED), ("b", SYNCED)]


def test_an_equal_owned_app_writes_nothing():
    plan = plan_sync(Source("fleet"), C2, [want("a")], [live("a")], C1)
    assert plan.apply == () and plan.drift == () and plan.apps[0].state == SYNCED


def test_a_new_commit_that_changes_an_app_applies_it_without_calling_it_drift():
    plan = plan_sync(Source("fleet", self_heal=False), C2, [want("a", 3)], [live("a")], C1)
    assert names(plan.apply) == ["a"] and plan.drift == ()
    assert plan.apply[0]["owner"] == f"gitsource/fleet@{C2}"


@pytest.mark.parametrize("self_heal, applied, state", [
    pytest.param(True, ["a"], SYNCED, id="self-heal-puts-it-back"),
    pytest.param(False, [], OUT_OF_SYNC, id="no-self-heal-reports-it"),
])
def test_a_hand_change_after_the_last_sync_is_drift(self_heal, applied, state):
    plan = plan_sync(Source("fleet", self_heal=self_heal), C1, [want("a", 1)], [live("a", 3)], C1)
    assert names(plan.apply) == applied
    [drift] = plan.drift
    assert drift.diff == ("spec.processes.web.instances: live 3, git 1",) and drift.healed is self_heal
    assert plan.apps[0].state == state


def test_a_deleted_owned_app_still_in_git_is_drift_and_revived():
    plan = plan_sync(Source("fleet"), C1, [want("a")], [live("a", deleting=True)], C1)
    assert names(plan.apply) == ["a"]
    assert plan.drift[0].diff == ("deleting: the app was deleted, git still declares it",)


def test_prune_names_only_apps_this_source_owns():
    store = [live("a"), live("gone"), live("hand", owner=None), live("theirs", owner="gitsource/other@x"),
             live("leaving", deleting=True)]
    plan = plan_sync(Source("fleet"), C2, [want("a")], store, C1)
    assert plan.prune == ("gone",)


def test_prune_off_reports_the_app_instead():
    plan = plan_sync(Source("fleet", prune=False), C2, [want("a")], [live("a"), live("gone")], C1)
    assert plan.prune == ()
    assert {s.name: s.state for s in plan.apps} == {"a": SYNCED, "gone": OUT_OF_SYNC}


def test_a_hand_applied_app_named_in_git_is_adopted():
    plan = plan_sync(Source("fleet"), C1, [want("a")], [live("a", owner=None)], None)
    assert names(plan.apply) == ["a"] and plan.apply[0]["owner"] == MINE


def test_an_app_of_another_source_refuses_the_whole_commit():
    plan = plan_sync(Source("fleet"), C1, [want("a"), want("b")], [live("b", owner="gitsource/other@x")], None)
    assert plan.apply == () and plan.prune == ()
    assert plan.refused == "apps/b.yaml: app 'b' is owned by gitsource/other, not gitsource/fleet"


@pytest.mark.parametrize("allow_empty, owned, refused", [
    pytest.param(False, [live("a")], True, id="refused"),
    pytest.param(True, [live("a")], False, id="allowed"),
    pytest.param(False, [live("hand", owner=None)], False, id="nothing-owned"),
])
def test_a_commit_with_no_app_deletes_everything_only_with_allow_empty(allow_empty, owned, refused):
    plan = plan_sync(Source("fleet", allow_empty=allow_empty, path="apps"), C2, [], owned, C1)
    assert (plan.refused is not None) is refused
    if refused:
        assert "refusing to delete all 1 apps this source owns (set allowEmpty: true" in plan.refused
        assert plan.prune == ()


def test_defaults_filled_on_both_sides_are_not_drift_but_a_real_difference_is():
    assert differences({"a": {"b": 1, "c": "x"}}, {"a": {"c": "x", "b": 1}}) == []
    assert differences({"a": 1}, {"a": 1.0}) == ["a: live 1, git 1.0"]
    assert differences({"a": {"b": 1}}, {"a": {}}) == ["a.b: live 1, git absent"]
    w = Wanted("a", {"team": "x"}, spec(), "sha256:b")
    assert app_differences(live("a"), w) == ("metadata.labels.team: live absent, git 'x'",
                                             "source: live 'sha256:a', git 'sha256:b'")


@pytest.mark.parametrize("status, generation, requested, now, due", [
    pytest.param({}, 1, None, 100.0, True, id="never-synced"),
    pytest.param({"lastAttempt": 90.0, "generation": 1}, 1, None, 100.0, True, id="interval-passed"),
    pytest.param({"lastAttempt": 95.0, "generation": 1}, 1, None, 100.0, False, id="interval-not-passed"),
    pytest.param({"lastAttempt": 95.0, "generation": 1}, 2, None, 100.0, True, id="spec-changed"),
    pytest.param({"lastAttempt": 95.0, "generation": 1, "handledRequest": 3.0}, 1, 4.0, 100.0, True,
                 id="sync-asked"),
    pytest.param({"lastAttempt": 95.0, "generation": 1, "handledRequest": 4.0}, 1, 4.0, 100.0, False,
                 id="sync-asked-and-done"),
])
def test_is_due(status, generation, requested, now, due):
    assert is_due(10.0, status, generation, requested, now) is due
