"""What `get instances` and `get nodes` show: the desired table merged with what agents report."""
from corral.store.base import DesiredInstance
from reconciler.model import READY, NodeView
from reconciler.views import instances_json, nodes_json

IMG = "sha256:" + "a" * 64


def row(iid, node):
    return DesiredInstance(id=iid, app="hello", process="web", node=node, revision="1", image=IMG,
                           spec={}, created_at=0.0)


def reported(iid, state="running", ready=True):
    return {"id": iid, "app": "hello", "process": "web", "state": state, "ready": ready,
            "port": 4000, "address": "127.0.0.1", "revision": "1", "image": IMG, "restarts": 0}


def by_id(items):
    return {i["id"]: i for i in items}


def test_desired_running_ready_instance_is_ready():
    items = by_id(instances_json([row("a", "n1")], {"a": ("n1", reported("a"))}, {"n1": "ready"}))
    assert items["a"]["ready"] and items["a"]["state"] == "running" and items["a"]["desired"]


def test_desired_instance_nobody_reports_is_pending():
    items = by_id(instances_json([row("a", "n1")], {}, {"n1": "ready"}))
    assert items["a"]["state"] == "pending" and not items["a"]["ready"]


def test_stale_copy_on_a_node_that_came_back_is_listed_but_never_ready():
    # The table moved "a" away while n1 was lost; n1 is back and still runs it.
    items = by_id(instances_json([row("b", "n2")], {"a": ("n1", reported("a")), "b": ("n2", reported("b"))},
                                 {"n1": "ready", "n2": "ready"}))
    assert items["a"]["state"] == "running" and not items["a"]["desired"]
    assert not items["a"]["ready"], "a copy the table no longer holds must leave every ready list"
    assert items["b"]["ready"]


def test_instances_on_an_unreachable_node_are_unknown_and_not_ready():
    items = by_id(instances_json([row("a", "n1")], {"a": ("n1", reported("a"))}, {"n1": "unreachable"}))
    assert items["a"]["state"] == "unknown" and not items["a"]["ready"]


def test_each_node_counts_and_allocates_the_desired_rows_placed_on_it():
    rows = [DesiredInstance(id=i, app="hello", process="web", node=n, revision="1", image=IMG,
                            spec={"resources": {"cpu": 0.5, "memory": 64}}, created_at=0.0)
            for i, n in (("a", "n1"), ("b", "n2"), ("c", "n1"))]
    views = [NodeView("n1", READY), NodeView("n2", READY), NodeView("n3", READY)]
    out = {n["name"]: n for n in nodes_json(views, [], {}, rows, lambda name: None)}
    assert [(out[n]["instances"], out[n]["allocated"]) for n in ("n1", "n2", "n3")] == [
        (2, {"cpu": 1.0, "memory": 128}), (1, {"cpu": 0.5, "memory": 64}), (0, {"cpu": 0, "memory": 0})]
