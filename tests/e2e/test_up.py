"""End to end, as a user meets corral: `corral up`, apply the example, see it
served, scale, change, lose the leader, delete, and nothing is left running.

Once on the embedded SQLite store and once on PostgreSQL.
"""
import contextlib
import os
import signal
import urllib.request
import json

import pytest
import requests
import yaml

from tests.e2e.cluster import UpCluster, app_copy, instance_processes, wait_for
from tests.pg import PostgresUnavailable, postgres_dsn
from tests.support import need, scratch_schema


BAD_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "manifests", "bad")
THROUGH_THE_API = ["negative-instances.yaml", "unknown-process-field.yaml"]


def http_json(inst, path="/"):
    with urllib.request.urlopen(f"http://{inst['address']}:{inst['port']}{path}", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


def ready(cluster, app):
    return [i for i in cluster.instances(app) if i["ready"] and i["state"] == "running"]


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request, tmp_path):
    with contextlib.ExitStack() as stack:
        store = None
        if request.param == "postgresql":
            try:
                base = postgres_dsn()
            except PostgresUnavailable as e:
                need("postgresql", str(e))
            store = stack.enter_context(scratch_schema(base, prefix="e2e"))
        c = UpCluster(tmp_path, nodes=2, store=store)
        c.backend = request.param
        yield c
        assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()


def test_apply_serve_scale_change_delete(cluster, tmp_path):
    name = f"hello-{cluster.backend[:2]}"
    manifest = app_copy(tmp_path, name, instances=2)

    out = cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "180s").stdout
    assert f"app/{name} created" in out
    serving = ready(cluster, name)
    assert len(serving) == 2
    assert len({i["node"] for i in serving}) == 2, "two instances on two ready nodes must not share one"
    for inst in serving:
        body = http_json(inst)
        assert body == {"greeting": "Hello from corral", "app": name, "instance": inst["id"],
                        "node": inst["node"], "path": "/"}

    # The same spec again changes nothing, not even the generation.
    gen = cluster.json("get", "apps", name)["generation"]
    assert f"app/{name} unchanged" in cluster.corral("apply", "-f", manifest).stdout
    assert cluster.json("get", "apps", name)["generation"] == gen
    assert cluster.corral("diff", "-f", manifest, check=False).returncode == 0

    # Scaling is not a new revision: the two that run keep running.
    before = {i["id"] for i in serving}
    app_copy(tmp_path, name, instances=3)
    assert cluster.corral("diff", "-f", manifest, check=False).returncode == 1
    cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "60s")
    after = ready(cluster, name)
    assert len(after) == 3 and before <= {i["id"] for i in after}
    assert cluster.json("get", "apps", name)["revision"] == "1"

    # An env change is a new revision: every instance is replaced, the new value served.
    app_copy(tmp_path, name, instances=3, env={"GREETING": "Howdy"})
    cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "60s")
    app = cluster.json("get", "apps", name)
    assert app["revision"] == "2" and app["ready"] == 3
    wait_for("old revision gone", lambda: all(i["revision"] == "2" for i in cluster.instances(name)))
    assert {http_json(i)["greeting"] for i in ready(cluster, name)} == {"Howdy"}

    describe = cluster.corral("describe", "app", name).stdout
    assert "Progressing  True     Complete" in describe and "Scheduled" in describe

    # Delete stops every instance (with its grace) and leaves no process behind.
    cluster.corral("delete", "app", name, "--timeout", "60s")
    wait_for("no instance listed", lambda: not cluster.instances(name), timeout=30)
    wait_for("no instance process left", lambda: not instance_processes(name), timeout=15)


def test_a_killed_leader_is_succeeded_at_a_new_epoch_and_started_again_and_the_app_keeps_serving(cluster, tmp_path):
    name = f"fo-{cluster.backend[:2]}"
    manifest = app_copy(tmp_path, name, instances=2)
    cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "180s")
    leader, pid, epoch = wait_for("a leader", cluster.lead)
    os.kill(pid, signal.SIGKILL)

    for inst in ready(cluster, name):  # served throughout: agents keep what they run
        http_json(inst)
    # Whoever leads next (the survivor, or the killed one started again by corral up after the lease ran out)
    # leads at a new epoch: nothing the killed process had sent counts any more.
    wait_for("a leader at a new epoch", lambda: (cluster.lead() or (None, None, epoch))[2] > epoch, timeout=30)
    wait_for(f"{leader} started again by corral up",
             lambda: cluster.daemons("reconciler").get(leader) not in (None, pid), timeout=30)
    assert f"corral up: reconciler-{leader[1:]} killed by SIGKILL; starting it again in 1s" in cluster.tail(200)

    app_copy(tmp_path, name, instances=3)
    cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "60s")
    assert len(ready(cluster, name)) == 3
    cluster.corral("delete", "app", name, "--timeout", "60s")
    wait_for("no instance process left", lambda: not instance_processes(name), timeout=30)


def node_1_agent_started(cluster):
    return next((n["agent_started"] for n in cluster.json("get", "nodes") if n["name"] == "node-1"), None)


def test_a_killed_agent_is_started_again_adopts_its_instances_and_down_stops_them(cluster, tmp_path):
    name = f"ag-{cluster.backend[:2]}"
    cluster.corral("apply", "-f", app_copy(tmp_path, name, instances=2), "--wait", "--timeout", "180s")
    pids = {i["id"]: i["pid"] for i in ready(cluster, name)}
    agent = cluster.daemons("agent")["node-1"]
    started = node_1_agent_started(cluster)
    os.kill(agent, signal.SIGKILL)
    wait_for("node-1's agent started again", lambda: cluster.daemons("agent").get("node-1") not in (None, agent),
             timeout=30)
    wait_for("a report from node-1's new agent", lambda: node_1_agent_started(cluster) not in (None, started),
             timeout=30)
    wait_for("both instances ready again, under the same pids",
             lambda: {i["id"]: i["pid"] for i in ready(cluster, name)} == pids, timeout=60)
    assert cluster.down() == 0
    assert not instance_processes(name), "instances outlived corral up: the restarted agent did not stop them"


def api_post(cluster, path, body):
    """POST ``body`` to the cluster's first API with its token, as no client would: ``(status, JSON reply)``."""
    with open(os.path.join(cluster.env["XDG_CONFIG_HOME"], "corral", "config.yaml")) as f:
        conf = yaml.safe_load(f)
    r = requests.post(conf["api"][0] + path, json=body, headers={"Authorization": f"Bearer {conf['token']}"},
                      timeout=30)
    return r.status_code, r.json()


@pytest.mark.parametrize("name", THROUGH_THE_API)
def test_a_bad_manifest_sent_past_the_client_is_refused_by_the_api_naming_the_field(shared_cluster, name):
    """The client refuses every bad manifest before any request (tests/unit/test_cli_apply_refuses.py); these two
    are sent to the apply route anyway, so the API's own check is the one that refuses them."""
    path = os.path.join(BAD_DIR, name)
    with open(path) as f:
        text = f.read()
    [expect] = [line[len("# expect: "):] for line in text.splitlines() if line.startswith("# expect: ")]
    field_and_problem = expect.split(": ", 1)[1]        # "<file>:<line>: " is the client's; the API names the app
    before = shared_cluster.corral("get", "apps", "-o", "json").stdout
    status, reply = api_post(shared_cluster, "/v1/apply",
                             {"documents": [{"doc": yaml.safe_load(text), "source_digest": "sha256:" + "0" * 64}]})
    assert (status, reply) == (400, {"error": f"app 'hello': {field_and_problem}"})
    assert shared_cluster.corral("get", "apps", "-o", "json").stdout == before


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    c = UpCluster(tmp_path_factory.mktemp("bad"), nodes=1)
    yield c
    assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()
