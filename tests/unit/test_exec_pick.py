"""Which instance `corral exec` runs in, and how outcomes are said: pure pieces of the relay and the runner."""
import pytest

from nodeagent.exec import exit_status
from reconciler.httpio import HttpError
from reconciler.session_relay import pick_instance


def inst(iid, process="web", state="running", ready=True):
    return {"id": iid, "app": "hello", "process": process, "state": state, "ready": ready, "node": "n1"}


@pytest.mark.parametrize("instances, kw, expected", [
    ([inst("a", ready=False), inst("b")], {}, "b"),
    ([inst("a", state="starting", ready=False), inst("b", state="running", ready=False)], {}, "b"),
    ([inst("a", state="unknown", ready=False)], {}, "a"),
    ([inst("a"), inst("w", process="worker")], {"process": "worker"}, "w"),
    ([inst("a"), inst("b", ready=False)], {"instance": "b"}, "b"),
], ids=["ready-first", "then-running", "then-any", "by-process", "named"])
def test_pick_instance(instances, kw, expected):
    assert pick_instance(instances, "hello", **kw)["id"] == expected


@pytest.mark.parametrize("kw, sentence", [
    ({}, "app 'hello' has no instances"),
    ({"process": "worker"}, "process 'worker' of app 'hello' has no instances"),
    ({"instance": "zz"}, "instance 'zz' of app 'hello' not found"),
], ids=["none", "no-process", "unknown-instance"])
def test_pick_instance_says_what_matched_nothing(kw, sentence):
    with pytest.raises(HttpError) as e:
        pick_instance([inst("x", process="web") | {"app": "other"}], "hello", **kw)
    assert (e.value.status, e.value.message) == (404, sentence)


@pytest.mark.parametrize("returncode, status", [(0, 0), (7, 7), (-9, 137), (-2, 130)])
def test_exit_status_is_the_shells(returncode, status):
    assert exit_status(returncode) == status
