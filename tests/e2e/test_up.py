"""End to end, as a user meets corral: `corral up`, apply the example, see it
served, scale, change, lose the leader, delete, and nothing is left running.

Once on the embedded SQLite store and once on PostgreSQL.
"""
import glob
import os
import signal
import urllib.request
import json

import pytest

from tests.e2e.cluster import UpCluster, app_copy, instance_processes, wait_for
from tests.pg import PostgresUnavailable, postgres_dsn, with_search_path

pytestmark = pytest.mark.e2e

BAD = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "manifests", "bad", "*.yaml")))


def http_json(inst, path="/"):
    with urllib.request.urlopen(f"http://{inst['address']}:{inst['port']}{path}", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


def ready(cluster, app):
    return [i for i in cluster.instances(app) if i["ready"] and i["state"] == "running"]


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request, tmp_path):
    store = None
    if request.param == "postgresql":
        try:
            base = postgres_dsn()
        except PostgresUnavailable as e:
            pytest.skip(str(e))
        import psycopg2
        schema = "e2e_" + os.urandom(4).hex()
        with psycopg2.connect(base) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
        store = with_search_path(base, schema)
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


def test_leader_killed_survivor_takes_over_and_app_keeps_serving(cluster, tmp_path):
    name = f"fo-{cluster.backend[:2]}"
    manifest = app_copy(tmp_path, name, instances=2)
    cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "180s")
    leader, pid = wait_for("a leader", cluster.leader)
    os.kill(pid, signal.SIGKILL)

    for inst in ready(cluster, name):  # served throughout: agents keep what they run
        http_json(inst)
    new_leader, _ = wait_for("the survivor to lead", lambda: (cluster.leader() or (leader,))[0] != leader
                             and cluster.leader(), timeout=30)
    assert new_leader != leader

    app_copy(tmp_path, name, instances=3)
    cluster.corral("apply", "-f", manifest, "--wait", "--timeout", "60s")
    assert len(ready(cluster, name)) == 3
    cluster.corral("delete", "app", name, "--timeout", "60s")
    wait_for("no instance process left", lambda: not instance_processes(name), timeout=30)


@pytest.mark.parametrize("path", BAD, ids=[os.path.basename(p) for p in BAD])
def test_bad_manifest_is_refused_and_writes_nothing(request, tmp_path, path, shared_cluster):
    before = shared_cluster.corral("get", "apps", "-o", "json").stdout
    r = shared_cluster.corral("apply", "-f", path, check=False)
    assert r.returncode != 0
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and os.path.basename(path) in first
    assert shared_cluster.corral("get", "apps", "-o", "json").stdout == before


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    c = UpCluster(tmp_path_factory.mktemp("bad"), nodes=1)
    yield c
    c.down()
