"""The services and backups routes over a real store and the real servers: apply refuses a service the cluster
has no server for, with that sentence; no answer ever carries a password; a backup is verified and listed;
a restore into the live service needs force and takes a backup first; delete says what is kept."""
import json

import psycopg2

from corral.settings import ServiceServers, Timings
from reconciler.api import Api
from reconciler.appservices import ServiceKeeper
from tests.integration.test_app_services_leader import keeper, lead, spec, store  # noqa: F401 (fixtures)
from tests.integration.test_gitops_sync import call
from tests.servicekit import unique_app

AUTH = {"HTTP_AUTHORIZATION": "Bearer t"}


def apply_body(store, name, app_spec):
    store.put_source("sha256:" + "0" * 64, b"x")
    return json.dumps({"documents": [{"doc": {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": name},
                                              "spec": app_spec}, "source_digest": "sha256:" + "0" * 64}]}).encode()


def test_apply_refuses_a_service_the_cluster_has_no_server_for(store):
    only_pg = ServiceKeeper(store, ServiceServers(postgresql="postgresql://postgres@127.0.0.1:5432/postgres"),
                            Timings(), "r1")
    api = Api(store, state=None, token="t", kick=lambda *a: None, services=only_pg)
    status, body = call(api, "POST", "/v1/apply", apply_body(store, "shop", spec()), AUTH)
    assert (status, body) == (400, {"error": "app shop asks for a redis service (cache), but this cluster has no "
                                             "redis server (setting services.redis)"})
    assert store.list_apps() == [], "nothing was written"
    both = ServiceKeeper(store, ServiceServers(postgresql="postgresql://postgres@127.0.0.1:5432/postgres",
                                               redis="redis://127.0.0.1:6379"), Timings(), "r1")
    api = Api(store, state=None, token="t", kick=lambda *a: None, services=both)
    status, body = call(api, "POST", "/v1/apply", apply_body(store, "shop", {**spec(), "backups": {
        "schedule": "0 3 * *"}}), AUTH)
    assert status == 400 and "spec.backups.schedule: '0 3 * *' has 4 fields" in body["error"], body


def test_backups_through_the_api_are_verified_and_a_restore_needs_force(store, keeper):
    k, made = keeper
    app = unique_app("api")
    made += [(app, "db", "postgresql"), (app, "cache", "redis")]
    kicked = []
    api = Api(store, state=None, token="t", kick=lambda *a: kicked.extend(a), services=k)
    assert call(api, "POST", "/v1/apply", apply_body(store, app, spec()), AUTH)[0] == 200
    k.sync(lead(store))
    db = {r.name: r for r in store.list_services(app)}["db"]
    with psycopg2.connect(k.url(db)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 5)")

    status, made_now = call(api, "POST", f"/v1/apps/{app}/backups", json.dumps({"service": "db"}).encode(), AUTH)
    assert status == 200 and [b["verified"] for b in made_now] == [True]
    backup = made_now[0]["id"]
    status, services = call(api, "GET", "/v1/services", headers=AUTH)
    mine = [s for s in services if s["app"] == app]
    assert {s["name"]: s["state"] for s in mine} == {"db": "ready", "cache": "ready"}
    assert {s["name"]: (s["lastBackup"] or {}).get("id") for s in mine} == {"db": backup, "cache": None}
    status, one = call(api, "GET", f"/v1/services/{app}/db", headers=AUTH)
    assert status == 200 and one["env"] == ["DB_URL", "DATABASE_URL"] and [b["id"] for b in one["backups"]] == [backup]
    shown = json.dumps([services, one])
    assert db.password not in shown and "password" not in shown, "no answer carries a password"

    with psycopg2.connect(k.url(db)) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE t")
    status, said = call(api, "POST", f"/v1/apps/{app}/backups/{backup}/restore", b"{}", AUTH)
    assert status == 409 and "add --force" in said["error"]
    status, done = call(api, "POST", f"/v1/apps/{app}/backups/{backup}/restore", b'{"force": true}', AUTH)
    assert status == 200 and done["safetyBackup"] != backup
    with psycopg2.connect(k.url(db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone()[0] == 5
    assert len(store.list_service_backups(app, "db")) == 2, "the live data was backed up before the restore"

    made += [(app, "copy", "postgresql")]
    status, done = call(api, "POST", f"/v1/apps/{app}/backups/{backup}/restore", b'{"toNew": "copy"}', AUTH)
    assert status == 200 and done["service"] == "copy"
    copy = {r.name: r for r in store.list_services(app)}["copy"]
    assert copy.state == "retained" and "name it in spec.services" in copy.message
    with psycopg2.connect(k.url(copy)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone()[0] == 5
    status, said = call(api, "POST", f"/v1/apps/{app}/backups/{backup}/restore", b'{"toNew": "copy"}', AUTH)
    assert status == 409 and "has a service copy already" in said["error"]

    status, deleted = call(api, "DELETE", f"/v1/apps/{app}", headers=AUTH)
    assert status == 202 and deleted["services"] == [{"name": "cache", "type": "redis", "onDelete": "Retain"},
                                                     {"name": "db", "type": "postgresql", "onDelete": "Retain"}]
