"""The services example end to end on `corral up`: it finds this machine's PostgreSQL and Redis and says so,
the visits app gets its database and cache, serves, keeps its data through a rolling update, is backed up
(VERIFIED yes), restored from that backup, has its database password rotated without a failed request, and
on delete its data is kept (onDelete: Retain, said so)."""
import json
import os
import shutil
import urllib.request

import psycopg2
import pytest
import yaml

from services.base import Service
from services.postgresql import PostgresProvisioner
from services.redis import RedisProvisioner
from tests.e2e.cluster import UpCluster, wait_for
from tests.e2e.test_rollout import Load
from tests.e2e.installed import ROOT
from tests.servicekit import unique_app
from tests.support import need

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def visits_manifest(workdir, name, greeting):
    src = os.path.join(ROOT, "manifests", "examples")
    dest = os.path.join(str(workdir), "manifests")
    if not os.path.exists(dest):
        shutil.copytree(os.path.join(src, "visits"), os.path.join(dest, "visits"))
    with open(os.path.join(src, "visits.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["metadata"]["name"] = name
    doc["spec"]["env"]["GREETING"] = greeting
    doc["spec"]["processes"]["web"]["health"]["interval"] = "200ms"
    path = os.path.join(dest, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def get(inst, path):
    with urllib.request.urlopen(f"http://{inst['address']}:{inst['port']}{path}", timeout=10) as r:
        return json.loads(r.read())


def ready(cluster, app):
    return [i for i in cluster.instances(app) if i["ready"] and i["state"] == "running"]


@pytest.fixture
def app_name():
    """A name of its own (the servers are shared); its database, user and keys are dropped after."""
    try:
        psycopg2.connect(LOCAL_PG, connect_timeout=2).close()
    except psycopg2.Error as e:
        need("postgresql", f"the services example needs the PostgreSQL on 127.0.0.1:5432: {e}")
    name = unique_app("visits")
    yield name
    PostgresProvisioner(LOCAL_PG).drop(Service(name, "db", "postgresql"))
    RedisProvisioner("redis://127.0.0.1:6379").drop(Service(name, "cache", "redis"))


def test_the_visits_example_keeps_its_data_through_a_rollout_a_backup_and_a_restore(tmp_path, app_name):
    cluster = UpCluster(tmp_path, nodes=1)
    try:
        assert "corral up: app services on PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 (found on this " \
               "machine); they let any local process in without a password" in cluster.tail()
        cluster.corral("apply", "-f", visits_manifest(tmp_path, app_name, "one"), "--wait", "--timeout", "4m")
        first = ready(cluster, app_name)
        assert len(first) == 2
        counts = [get(first[i % 2], "/home")["visits"] for i in range(4)]
        assert counts == [1, 2, 3, 4], "both instances count in the one database"
        assert get(first[0], "/top")["top"] == [["/home", 4]]
        services = {s["name"]: s for s in cluster.json("get", "services", app_name)}
        assert {n: (s["type"], s["state"]) for n, s in services.items()} == {
            "db": ("postgresql", "ready"), "cache": ("redis", "ready")}

        made = cluster.corral("backups", "create", app_name, "db")
        assert "verified yes" in made.stdout, made.stdout
        [backup] = cluster.json("get", "backups", app_name)
        assert backup["verified"] and "1 tables, 1 rows, counts and checksums agree" in backup["reason"]
        table = cluster.corral("get", "backups", app_name).stdout.splitlines()
        assert "VERIFIED" in table[0] and " yes " in table[1]
        described = cluster.corral("describe", "service", f"{app_name}/db").stdout
        assert "State:        ready" in described and f"Last backup:  {backup['id']}, verified yes" in described
        assert "DATABASE_URL" in described and f"corral_{app_name}_db_u1" not in described, "the app's URL is not shown"

        cluster.corral("apply", "-f", visits_manifest(tmp_path, app_name, "two"), "--wait", "--timeout", "4m")
        after = ready(cluster, app_name)
        assert {i["id"] for i in after}.isdisjoint({i["id"] for i in first}), "the instances were replaced"
        answer = get(after[0], "/home")
        assert (answer["greeting"], answer["visits"]) == ("two", 5), "the data survived the rolling update"

        refused = cluster.corral("backups", "restore", app_name, backup["id"], check=False)
        assert refused.returncode == 1 and "add --force" in refused.stderr
        restored = cluster.corral("backups", "restore", app_name, backup["id"], "--force")
        assert f"restored from {backup['id']}" in restored.stdout
        wait_for("the restored count", lambda: get(ready(cluster, app_name)[0], "/home")["visits"] == 5, timeout=30)
        assert len(cluster.json("get", "backups", app_name)) == 2, "the live data was backed up before the restore"

        with Load(cluster, app_name) as load:
            wait_for("requests flowing", lambda: load.ok > 20, timeout=30)
            cluster.corral("services", "rotate", f"{app_name}/db")
            wait_for("the instances rolled onto the new login and the old one retired",
                     lambda: (lambda db: db["generation"] == 2 and not db["rotating"])(
                         {s["name"]: s for s in cluster.json("get", "services", app_name)}["db"]), timeout=120)
        assert load.failures == [], f"{len(load.failures)} failed requests of {load.ok + len(load.failures)}"

        deleted = cluster.corral("delete", "app", app_name, "--timeout", "60s")
        assert "its services cache (redis), db (postgresql) and their backups are kept (onDelete: Retain)" \
            in deleted.stdout
        kept = wait_for("the services retained", lambda: [s for s in cluster.json("get", "services", app_name)
                                                          if s["state"] == "retained"] or None, timeout=30)
        assert len(kept) == 2
    finally:
        cluster.down()
