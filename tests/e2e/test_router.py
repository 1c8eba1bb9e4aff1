"""The router end to end on a `corral up` cluster: the app reached by its host name, `corral get
routes`, a conflicting route refused at apply, and a rolling update, a node drain and a
scale-down under a steady load through the router that fail no request (instances leave the
routers' tables when the leader decides to stop them, before their drain ends)."""
import os
import time

import pytest
import requests
import yaml

from tests.e2e.cluster import LoadLoop, UpCluster, app_copy, proc_environ, wait_for
from tests.e2e.test_rollout import write_app


class RouterLoad(LoadLoop):
    """Sends requests through the router, one after another, and counts what failed."""

    def __init__(self, port, host):
        self.url, self.host = f"http://127.0.0.1:{port}/", host
        super().__init__()

    def run(self):
        session = requests.Session()
        while not self.stopping.is_set():
            try:
                r = session.get(self.url, headers={"Host": self.host}, timeout=5)
                r.raise_for_status()
                self.greetings.add(r.json()["greeting"])
                self.ok += 1
            except (requests.RequestException, ValueError) as e:
                self.failures.append(str(e)[:200])
            time.sleep(0.005)


@pytest.fixture
def cluster(tmp_path):
    c = UpCluster(tmp_path, nodes=2)
    yield c
    assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()


def via_router(cluster, host):
    try:
        r = requests.get(f"http://127.0.0.1:{cluster.router_port}/", headers={"Host": host}, timeout=5)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


def test_an_app_is_reached_by_host_and_a_rollout_a_drain_and_a_scale_down_fail_no_request_through_the_router(cluster, tmp_path):
    path = write_app(app_copy(tmp_path, "roll"), "roll", greeting="one")
    cluster.corral("apply", "-f", path, "--wait", "--timeout", "180s")
    assert wait_for("the app through the router", lambda: via_router(cluster, "roll.localhost"),
                    timeout=30)["greeting"] == "one"
    routes = wait_for("both instances in the route table", lambda: [
        r for r in cluster.json("get", "routes") if r["app"] == "roll" and r["ready"] == 2], timeout=30)
    assert (routes[0]["host"], routes[0]["path"], routes[0]["process"]) == ("roll.localhost", "/", "web")
    assert "roll.localhost" in cluster.corral("get", "routes").stdout
    if os.geteuid() == 0:   # the router is not dumpable: only root reads what `up` started it with
        env = proc_environ(cluster.daemons("router")["router"])
        assert b"CORRAL_ROUTER_CREDENTIAL" in env and b"CORRAL_SECRET_FILE" not in env   # never the cluster key

    other = os.path.join(os.path.dirname(path), "thief.yaml")   # beside it: the same source folder
    with open(path) as f:
        doc = yaml.safe_load(f)
    doc["metadata"]["name"] = "thief"
    doc["spec"]["routes"] = [{"host": "ROLL.localhost"}]
    with open(other, "w") as f:
        yaml.safe_dump(doc, f)
    refused = cluster.corral("apply", "-f", other, check=False)
    assert refused.returncode != 0
    assert "host roll.localhost path / is already routed to app roll" in refused.stderr

    with RouterLoad(cluster.router_port, "roll.localhost") as load:
        wait_for("requests flowing", lambda: load.ok > 20, timeout=30)
        write_app(path, "roll", greeting="two")
        cluster.corral("apply", "-f", path)
        cluster.corral("rollout", "status", "roll", "--timeout", "120")
        wait_for("the new greeting through the router", lambda: "two" in load.greetings, timeout=30)
        time.sleep(1)
    assert load.failures == [], f"{len(load.failures)} of {load.ok + len(load.failures)} failed: {load.failures[:3]}"
    assert load.ok > 50

    with RouterLoad(cluster.router_port, "roll.localhost") as load:   # a drain moves an instance
        wait_for("requests flowing", lambda: load.ok > 20, timeout=30)
        node = cluster.instances("roll")[0]["node"]
        cluster.corral("node", "drain", node, "--timeout", "120")
        wait_for("the app served from the other node only", lambda: [
            r for r in cluster.json("get", "routes") if r["app"] == "roll" and r["ready"] == 2
            and all(i["node"] != node for i in cluster.instances("roll") if i["ready"])], timeout=60)
        time.sleep(1)
    assert load.failures == [], f"{len(load.failures)} of {load.ok + len(load.failures)} failed in the drain"

    with RouterLoad(cluster.router_port, "roll.localhost") as load:   # a scale-down stops one of the two
        wait_for("requests flowing", lambda: load.ok > 20, timeout=30)
        write_app(path, "roll", instances=1, greeting="two")
        cluster.corral("apply", "-f", path)
        wait_for("one instance left, and one in the route table", lambda: [
            i["state"] for i in cluster.instances("roll") if i["state"] in ("running", "stopping")] == ["running"]
            and [r for r in cluster.json("get", "routes") if r["app"] == "roll" and r["ready"] == 1], timeout=60)
        ok = load.ok
        wait_for("requests served by the one left", lambda: load.ok > ok + 20, timeout=30)
    assert load.failures == [], f"{len(load.failures)} of {load.ok + len(load.failures)} failed in the scale-down"
