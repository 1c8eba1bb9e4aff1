"""Which reports of an instance become events of its app, and with which reason."""
import pytest

from reconciler.instance_events import instance_events


def inst(state, restarts=0, message=None, iid="web-1"):
    return {"id": iid, "app": "shop", "process": "web", "state": state, "ready": state == "running",
            "restarts": restarts, "message": message}


@pytest.mark.parametrize("name, before, after, want", [
    ("RunningStays_NoEvent", [inst("running")], [inst("running")], []),
    ("Exit_BackOff", [inst("running")], [inst("backoff", 1, "exited with code 3; restarting in 1s")],
     [("shop", "BackOff", "instance web-1 on node n1: exited with code 3; restarting in 1s")]),
    ("Liveness_Unhealthy", [inst("running")],
     [inst("backoff", 1, "restarted: health check failed 3 times in a row (HTTP 500); restarting in 1s")],
     [("shop", "Unhealthy", "instance web-1 on node n1: restarted: health check failed 3 times in a row "
                            "(HTTP 500); restarting in 1s")]),
    ("Oom_OOMKilled", [inst("running")],
     [inst("backoff", 2, "OOMKilled: went over its memory limit of 64Mi (killed by SIGKILL); restarting in 2s")],
     [("shop", "OOMKilled", "instance web-1 on node n1: OOMKilled: went over its memory limit of 64Mi "
                            "(killed by SIGKILL); restarting in 2s")]),
    ("StillInBackOff_NoRepeat", [inst("backoff", 1, "x")], [inst("backoff", 1, "x")], []),
    ("CrashLoop_EachRestartCounts", [inst("backoff", 1, "x")], [inst("backoff", 2, "y")],
     [("shop", "BackOff", "instance web-1 on node n1: y")]),
    ("Failed_ForGood", [inst("running")], [inst("failed", 0, "exited with code 1")],
     [("shop", "InstanceFailed", "instance web-1 on node n1: exited with code 1")]),
    ("NewAndFailed_Counts", [], [inst("failed", 0, "command not found")],
     [("shop", "InstanceFailed", "instance web-1 on node n1: command not found")]),
    ("NewInBackOff_WasAnotherReconcilersEvent", [], [inst("backoff", 4, "x")], []),
])
def test_instance_events(name, before, after, want):
    assert instance_events("n1", before, after) == want
