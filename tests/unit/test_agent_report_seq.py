"""A reconciler tells a restarted agent (later started_at, seq from 1) from a delayed report."""
from reconciler.observed import Observed


def report(started_at, seq, state="running"):
    return {"node": {"name": "node-1", "address": "127.0.0.1", "labels": {}, "capacity": {}},
            "epoch_seen": 1, "started_at": started_at, "seq": seq,
            "instances": [{"id": "a", "app": "x", "process": "web", "state": state, "ready": False}]}


def kept_state(observed):
    return observed.reports()["node-1"].instances[0]["state"]


def test_a_delayed_report_of_the_same_agent_is_dropped():
    obs = Observed(started_at=0.0)
    obs.record(report(100.0, 5, "running"), now=1.0)
    assert obs.record(report(100.0, 4, "starting"), now=2.0) is False
    assert kept_state(obs) == "running"


def test_a_restarted_agent_starts_its_seq_over_and_is_believed():
    obs = Observed(started_at=0.0)
    obs.record(report(100.0, 50, "running"), now=1.0)
    obs.record(report(200.0, 1, "starting"), now=2.0)
    assert kept_state(obs) == "starting"
    assert obs.record(report(100.0, 51, "running"), now=3.0) is False, "the old agent process's late report"
    assert kept_state(obs) == "starting"


def test_a_report_without_seq_is_always_kept():
    obs = Observed(started_at=0.0)
    obs.record(report(100.0, 5), now=1.0)
    body = report(None, 1, "failed")
    del body["started_at"], body["seq"]
    obs.record(body, now=2.0)
    assert kept_state(obs) == "failed"
