"""`apply --wait`: when it returns, and the sentence when it gives up."""
import pytest

from corral.cli.client import ClientError
from corral.cli.commands import wait_available


class FakeClient:
    """Answers GET /v1/apps/NAME with the given app states, one per call (the last repeats)."""

    def __init__(self, *apps):
        self.apps = list(apps)

    def get(self, path, **kw):
        if path.startswith("/v1/apps/"):
            return self.apps.pop(0) if len(self.apps) > 1 else self.apps[0]
        return []


def app(generation, progressing, built=("True", "Succeeded", "")):
    return {"observedGeneration": generation, "ready": 2, "desired": 2, "revision": "2",
            "conditions": [{"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                            "message": progressing[2]},
                           {"type": "Built", "status": built[0], "reason": built[1], "message": built[2]}]}


def test_returns_once_the_applied_generation_is_complete():
    client = FakeClient(app(1, ("True", "Complete", "")), app(2, ("True", "Rolling", "")),
                        app(2, ("True", "Complete", "")))
    assert wait_available(client, "hello", 2, timeout=5, poll=0)["observedGeneration"] == 2


def test_fails_with_the_reason_when_the_rollout_misses_its_deadline():
    client = FakeClient(app(2, ("False", "ProgressDeadlineExceeded", "revision 2 made no progress in 600s")))
    with pytest.raises(ClientError, match="rollout failed: revision 2 made no progress"):
        wait_available(client, "hello", 2, timeout=5, poll=0)


def test_an_old_generation_deadline_does_not_fail_a_new_apply():
    client = FakeClient(app(1, ("False", "ProgressDeadlineExceeded", "old")), app(2, ("True", "Complete", "")))
    assert wait_available(client, "hello", 2, timeout=5, poll=0)["observedGeneration"] == 2


def test_unschedulable_keeps_waiting_and_the_timeout_says_why():
    client = FakeClient(app(2, ("False", "Unschedulable", "1 instance(s) of web pending: no node is ready")))
    with pytest.raises(ClientError, match="timed out after 0.2s waiting for app hello: 1 instance"):
        wait_available(client, "hello", 2, timeout=0.2, poll=0.01)


def test_an_app_waiting_for_its_services_times_out_saying_so():
    held = app(2, ("True", "Rolling", "0 of 2 instances available at revision 0"))
    held["conditions"].append({"type": "ServicesReady", "status": "False", "reason": "Failed",
                               "message": "service db: PostgreSQL at db1:5432 did not take the admin connection"})
    with pytest.raises(ClientError, match="waiting for app hello: its services are not ready: service db: PostgreSQL"):
        wait_available(FakeClient(held), "hello", 2, timeout=0.2, poll=0.01)
