"""The agent's pure diff: what to start, stop, keep and defer."""
import pytest

from nodeagent.diff import Changes, InstanceView, diff


def entry(iid, command=("python", "app.py")):
    return {"id": iid, "app": "hello", "process": "web", "revision": "1", "image": "sha256:" + "a" * 64,
            "artifact": {"url": "http://b/x", "sha256": "b" * 64},
            "spec": {"command": list(command), "env": {}, "port": False, "restart": "always",
                     "drainPeriod": 0, "stopGracePeriod": 1}}


def running(*ids):
    return {i: InstanceView(i) for i in ids}


def ids(changes):
    return ([e["id"] for e in changes.start], list(changes.stop), list(changes.keep), list(changes.deferred))


@pytest.mark.parametrize("current, assigned, expected", [
    pytest.param({}, [], ([], [], [], []), id="nothing-to-do"),
    pytest.param({}, [entry("a"), entry("b")], (["a", "b"], [], [], []), id="new-instances-start"),
    pytest.param(running("a", "b"), [entry("a")], ([], ["b"], ["a"], []), id="removed-instance-stops"),
    pytest.param(running("a"), [entry("a")], ([], [], ["a"], []), id="unchanged-is-kept"),
    pytest.param(running("a"), [entry("a", command=("other",))], ([], [], ["a"], []),
                 id="same-id-changed-spec-is-kept"),
    pytest.param(running("a", "b"), [], ([], ["a", "b"], [], []), id="empty-assignment-stops-all"),
    pytest.param({"a": InstanceView("a", stopping=True)}, [], ([], [], [], []), id="stopping-is-not-stopped-twice"),
    pytest.param({"a": InstanceView("a", stopping=True)}, [entry("a")], ([], [], [], ["a"]),
                 id="reassigned-while-stopping-waits"),
    pytest.param({}, [entry("a"), entry("a", command=("second",))], (["a"], [], [], []),
                 id="duplicate-id-first-counts"),
])
def test_diff(current, assigned, expected):
    assert ids(diff(current, assigned)) == expected


def test_diff_returns_the_assignment_entry_to_start():
    e = entry("a")
    assert diff({}, [e]).start == (e,)


def test_diff_does_not_mutate_inputs():
    current, assigned = running("a", "b"), [entry("b"), entry("c")]
    before = (dict(current), [dict(e) for e in assigned])
    diff(current, assigned)
    assert (current, assigned) == before


def test_diff_of_its_own_outcome_is_idempotent():
    assigned = [entry("a"), entry("b")]
    first = diff(running("b", "z"), assigned)
    after = running(*([e["id"] for e in first.start] + list(first.keep)))
    assert diff(after, assigned) == Changes(keep=("a", "b"))


def run_entry(iid):
    e = entry(iid)
    return {**e, "spec": {**e["spec"], "restart": "never", "run": True}}


@pytest.mark.parametrize("current, assigned, ran, start, refused", [
    pytest.param({}, [run_entry("r1")], frozenset(), ["r1"], [], id="a-new-run-starts"),
    pytest.param({}, [run_entry("r1")], frozenset({"r1"}), [], ["r1"], id="a-run-started-once-never-again"),
    pytest.param(running("r1"), [run_entry("r1")], frozenset({"r1"}), [], [], id="a-held-run-is-kept"),
    pytest.param({}, [entry("r1")], frozenset({"r1"}), ["r1"], [], id="only-runs-are-refused"),
])
def test_runs_start_once(current, assigned, ran, start, refused):
    changes = diff(current, assigned, ran)
    assert [e["id"] for e in changes.start] == start and list(changes.refused) == refused


def test_the_run_ledger_survives_a_restart_and_stays_private(tmp_path):
    from nodeagent.state import RUNS_KEPT, RunLedger
    ledger = RunLedger(str(tmp_path))
    ledger.add("hello-report-1")
    again = RunLedger(str(tmp_path))
    assert "hello-report-1" in again.ids
    assert (tmp_path / "runs.json").stat().st_mode & 0o777 == 0o600
    for i in range(RUNS_KEPT + 1):
        again.order.append(f"x{i}")
    again.add("last")
    assert len(RunLedger(str(tmp_path)).order) == RUNS_KEPT and "last" in RunLedger(str(tmp_path)).ids
    (tmp_path / "runs.json").write_text("{not json")
    with pytest.raises(ValueError, match="run ledger .* cannot be read"):
        RunLedger(str(tmp_path))
