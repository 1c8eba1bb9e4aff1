"""A reconciler's /healthz shows what its bus refused and dropped, next to its leadership."""
from reconciler.cluster_state import ClusterState


class Lease:
    epoch = 7


def test_health_carries_the_bus_counts():
    stats = {"accepted": 5, "rejected": {"bad signature": 3, "replayed": 1}, "sent": 2, "dropped": 4}
    state = ClusterState("r1", store=None, observed=None, lease=Lease(), timings=None, bus_stats=lambda: stats)
    assert state.health() == {"name": "r1", "leader": True, "epoch": 7,
                              "rejected_messages": {"bad signature": 3, "replayed": 1}, "dropped_messages": 4}
