"""Rolling updates and fencing, end to end on a `corral up` cluster.

- A client that keeps reading the ready list and sending requests sees zero
  failures through a maxUnavailable 0 rollout (drainPeriod at work: an
  instance leaves every ready list before it stops serving).
- History and undo: the rollout records revisions; undo goes back.
- The leader frozen with SIGSTOP past its lease: the other takes over and
  changes things; resumed with SIGCONT, the stale one changes nothing.
"""
import os
import signal
import time

import pytest
import requests
import yaml

from tests.e2e.cluster import LoadLoop, UpCluster, app_copy, instance_processes, proc_environ, wait_for


def write_app(path, name, instances=2, greeting="one"):
    with open(path) as f:
        doc = yaml.safe_load(f)
    doc["metadata"]["name"] = name
    doc["spec"]["env"]["GREETING"] = greeting
    web = doc["spec"]["processes"]["web"]
    web["instances"] = instances
    web["health"] = {"http": "/healthz", "interval": "200ms", "timeout": "1s"}
    web["drainPeriod"] = "2s"
    doc["spec"]["update"] = {"maxSurge": 1, "maxUnavailable": 0}
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


class Load(LoadLoop):
    """Keeps refreshing the ready list from the API and sending requests to the ready instances."""

    def __init__(self, cluster, app):
        with open(os.path.join(cluster.env["XDG_CONFIG_HOME"], "corral", "config.yaml")) as f:
            conf = yaml.safe_load(f)
        self.api, self.app = conf["api"], app
        self.headers = {"Authorization": f"Bearer {conf['token']}"}
        super().__init__()

    def ready_list(self):
        for url in self.api:
            try:
                items = requests.get(f"{url}/v1/instances", params={"app": self.app}, headers=self.headers,
                                     timeout=2).json()
                return [(i["address"], i["port"]) for i in items if i["ready"]]
            except (requests.RequestException, ValueError):
                continue
        return None

    def run(self):
        targets, fetched = [], 0.0
        session = requests.Session()
        while not self.stopping.is_set():
            if time.monotonic() - fetched > 0.2:
                fresh = self.ready_list()
                if fresh is not None:
                    targets, fetched = fresh, time.monotonic()
            for address, port in targets:
                try:
                    r = session.get(f"http://{address}:{port}/", timeout=2)
                    r.raise_for_status()
                    self.ok += 1
                    self.greetings.add(r.json()["greeting"])
                except (requests.RequestException, ValueError) as e:
                    self.failures.append(f"{address}:{port}: {e}")
            time.sleep(0.01)


@pytest.fixture
def cluster(tmp_path):
    c = UpCluster(tmp_path, nodes=3)
    yield c
    assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()


def test_rollout_with_max_unavailable_0_fails_no_request_and_undo_goes_back(cluster, tmp_path):
    path = write_app(app_copy(tmp_path, "roll"), "roll", greeting="one")
    cluster.corral("apply", "-f", path, "--wait", "--timeout", "180s")
    with Load(cluster, "roll") as load:
        wait_for("requests flowing", lambda: load.ok > 20, timeout=30)
        write_app(path, "roll", greeting="two")
        cluster.corral("apply", "-f", path)
        out = cluster.corral("rollout", "status", "roll", "--timeout", "120").stdout
        wait_for("the new greeting served", lambda: "two" in load.greetings, timeout=30)
        time.sleep(1)
    assert "rolled out" in out
    assert load.failures == [], f"{len(load.failures)} failed requests of {load.ok + len(load.failures)}"
    assert load.ok > 50
    app = cluster.json("get", "apps", "roll")
    assert (app["revision"], app["updated"], app["available"]) == ("2", 2, 2)
    history = cluster.json("rollout", "history", "roll")
    assert [(h["revision"], h["current"]) for h in history] == [(2, True), (1, False)]

    cluster.corral("rollout", "undo", "roll")
    cluster.corral("rollout", "status", "roll", "--timeout", "120")
    served = {requests.get(f"http://{i['address']}:{i['port']}/", timeout=5).json()["greeting"]
              for i in cluster.instances("roll") if i["ready"]}
    assert served == {"one"}
    assert cluster.json("get", "apps", "roll")["revision"] == "3"


def test_frozen_leader_is_fenced_and_changes_nothing_when_it_wakes(cluster, tmp_path):
    path = write_app(app_copy(tmp_path, "fence"), "fence", instances=2)
    cluster.corral("apply", "-f", path, "--wait", "--timeout", "180s")
    name, pid = wait_for("a leader", cluster.leader, timeout=30)
    os.kill(pid, signal.SIGSTOP)
    try:
        other = wait_for("the other reconciler to take over",
                         lambda: (cluster.leader() or (None,))[0] not in (None, name) and cluster.leader(), timeout=30)
        write_app(path, "fence", instances=3)
        cluster.corral("apply", "-f", path, "--wait", "--timeout", "120s")
        before = {i["id"]: i["pid"] for i in cluster.instances("fence")}
        assert len(before) == 3
        by_stale = len([e for e in cluster.json("get", "events") if e["actor"] == f"reconciler/{name}"])
    finally:
        os.kill(pid, signal.SIGCONT)
        woke = time.time()
    # The stale leader wakes believing it may lead: judge it once it has been awake, hearing every
    # agent, for several of its loop intervals (its own API says when it last heard each node).
    wait_for("the woken reconciler to hear every node for 3 s after waking",
             lambda: cluster.heard_by(name, after=woke + 3.0), timeout=60)
    assert cluster.leader()[0] == other[0]
    after = {i["id"]: i["pid"] for i in cluster.instances("fence")}
    assert after == before, "an instance was added, removed or restarted after the stale leader woke"
    running = {proc_environ(pid).get(b"CORRAL_INSTANCE", b"").decode() for pid in instance_processes("fence")}
    assert running == set(before), "processes of instances other than the desired ones run"
    assert len([e for e in cluster.json("get", "events") if e["actor"] == f"reconciler/{name}"]) == by_stale
