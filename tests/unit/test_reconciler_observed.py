"""Which reports count as a change (and wake the controller), and what is kept of each."""
import pytest

from reconciler.observed import Observed


def report(seq, load=(0.5, 0.4, 0.3), disk=10 << 30, rejected=None, state="running", ready=True,
           labels=None, memory=8 << 30, conditions=("MemoryLimitsNotEnforced",)):
    return {"node": {"name": "node-1", "address": "127.0.0.1", "labels": labels or {},
                     "capacity": {"cpu": 2, "memory": memory, "disk": disk},
                     "conditions": list(conditions), "load": list(load), "version": "0.1",
                     "rejected_messages": rejected or {}},
            "epoch_seen": 1, "started_at": 100.0, "seq": seq,
            "instances": [{"id": "a", "app": "x", "process": "web", "state": state, "ready": ready,
                           "pid": 42, "restarts": 0, "started_at": 101.0}]}


def test_the_first_report_of_a_node_is_a_change():
    assert Observed(started_at=0.0).record(report(1), now=1.0) is True


def test_a_heartbeat_whose_only_news_is_volatile_is_no_change_but_is_kept():
    obs = Observed(started_at=0.0)
    obs.record(report(1), now=1.0)
    version = obs.version
    changed = obs.record(report(2, load=(1.9, 1.0, 0.7), disk=9 << 30, rejected={"signature": 3}), now=2.0)
    assert changed is False and obs.version == version
    kept = obs.reports()["node-1"]
    assert (kept.node["load"], kept.node["capacity"]["disk"], kept.node["rejected_messages"], kept.seq,
            kept.received_at) == ([1.9, 1.0, 0.7], 9 << 30, {"signature": 3}, 2, 2.0)


@pytest.mark.parametrize("news", [
    {"state": "failed", "ready": False},
    {"ready": False},
    {"labels": {"zone": "b"}},
    {"memory": 4 << 30},
    {"conditions": ("DiskPressure", "MemoryLimitsNotEnforced")},
], ids=["InstanceFailed", "InstanceNotReady", "LabelsChanged", "MemoryChanged", "DiskPressure"])
def test_a_heartbeat_with_news_beside_the_volatile_fields_is_a_change(news):
    obs = Observed(started_at=0.0)
    obs.record(report(1), now=1.0)
    assert obs.record(report(2, load=(3.0, 2.0, 1.0), disk=1 << 30, **news), now=2.0) is True
