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
