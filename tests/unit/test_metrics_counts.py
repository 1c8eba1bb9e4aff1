"""The pure decisions behind the metrics: which reason a stop, a placement or a restart counts
under, the route label of a request, what the kernel's texts say of an instance's usage."""
import pytest

from nodeagent import cgroups
from nodeagent.metrics import instance_counts, restart_reason
from reconciler.metrics import plan_counts, rollout_state, route_label, stop_kind
from reconciler.model import DesiredRow
from reconciler.planner import Plan, Stop


def row(iid, app="a", process="web"):
    return DesiredRow(id=iid, app=app, process=process, node="n1", revision="1", image="sha256:x", spec={},
                      created_at=0.0)


@pytest.mark.parametrize("stop, kind", [
    (Stop("i", "node n1 is lost", node_lost=True), "node_lost"),
    (Stop("i", "replaced by revision 4"), "rollout"),
    (Stop("i", "scaled down to 2"), "scaled_down"),
    (Stop("i", "scaled down to 0"), "scaled_down"),
    (Stop("i", "node n1 is draining"), "drain"),
    (Stop("i", "app no longer exists"), "deleted"),
    (Stop("i", "app is being deleted"), "deleted"),
    (Stop("i", "process worker was removed from the spec"), "process_removed"),
    (Stop("i", "something new"), "other"),
], ids=lambda v: v if isinstance(v, str) else v.reason)
def test_stop_kind(stop, kind):
    assert stop_kind(stop) == kind


@pytest.mark.parametrize("boots, stops, placements", [
    (["a/web"], [], {"scale_up": 1}),
    (["a/web", "a/web"], [("old1", "node n1 is lost", True)], {"replacement": 1, "scale_up": 1}),
    (["a/web"], [("old1", "replaced by revision 2", False), ("old2", "replaced by revision 2", False)],
     {"rollout": 1}),
    (["b/web"], [("old1", "node n1 is lost", True)], {"scale_up": 1}),   # a loss of another app's process
    ([], [("old1", "scaled down to 0", False)], {}),
], ids=["scale-up", "a-replacement-and-a-scale-up", "a-rollout-step", "another-process-lost", "only-a-stop"])
def test_plan_counts_name_each_placement_after_what_it_makes_up_for(boots, stops, placements):
    rows = [row("old1"), row("old2")]
    plan = Plan(boot=tuple(row(f"new{i}", *b.split("/")) for i, b in enumerate(boots)),
                stop=tuple(Stop(i, why, node_lost=lost) for i, why, lost in stops))
    got_placements, evictions = plan_counts(plan, rows)
    assert dict(got_placements) == placements
    assert sum(evictions.values()) == len(stops)


@pytest.mark.parametrize("pattern, label", [
    (None, "other"),
    ("/metrics", "/metrics"),
    (r"/v1/apps/(?P<name>[^/]+)", "/v1/apps/{name}"),
    (r"/v1/nodes/(?P<name>[^/]+)/(?P<verb>cordon|uncordon)", "/v1/nodes/{name}/{verb}"),
])
def test_route_label_is_the_route_not_the_path(pattern, label):
    assert route_label(pattern) == label


@pytest.mark.parametrize("why, oom, reason", [(None, False, "exited"), ("liveness failed 3 times", False, "liveness"),
                                              (None, True, "oom_killed"), ("liveness", True, "oom_killed")])
def test_restart_reason(why, oom, reason):
    assert restart_reason(why, oom) == reason


def test_instance_counts_keep_every_state_of_an_app_that_has_instances():
    by_state, ready = instance_counts([("a", "running", True), ("a", "backoff", False), ("b", "starting", False)])
    assert by_state[("a", "running")] == 1 and by_state[("a", "backoff")] == 1 and by_state[("a", "failed")] == 0
    assert by_state[("b", "starting")] == 1 and ready == {"a": 1, "b": 0}


def test_the_kernel_s_texts_of_usage():
    assert cgroups.cpu_seconds("usage_usec 2500000\nuser_usec 1\n") == 2.5
    assert cgroups.cpu_seconds("") is None and cgroups.cpu_seconds(None) is None
    stat = "42 (a (weird) name) S 1 42 42 0 -1 4194304 0 0 0 0 150 50 10 0 20 0 1 0 100 0 0"
    assert cgroups.process_usage(stat, "500 100 0 0 0 0 0", 100, 4096) == (2.1, 100 * 4096)
    assert cgroups.process_usage(None, None, 100, 4096) is None
    assert cgroups.process_usage("garbage", "x", 100, 4096) is None


@pytest.mark.parametrize("conditions, state", [
    ([], None),
    ([{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True", "reason": "Rolling"}],
     "rolling"),
    ([{"type": "Progressing", "status": "True", "reason": "Complete"}], "done"),
    ([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}], "stuck"),
    ([{"type": "Progressing", "status": "False", "reason": "BuildFailed"}], "stuck"),
])
def test_rollout_state_of_a_stored_status(conditions, state):
    assert rollout_state({"conditions": conditions}) == state
