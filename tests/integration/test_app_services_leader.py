"""The leader's services pass against a real store and the real PostgreSQL and Redis: an app asking for a
database and a cache is provisioned once, its instances are placed only then with DATABASE_URL, REDIS_URL,
<NAME>_URL and REDIS_KEY_PREFIX; a rotation rolls them and retires the old login; delete keeps the data
(Retain) or drops it after a final verified backup (Delete)."""
import dataclasses
import time

import psycopg2
import pytest
import redis

from corral.settings import ServiceServers, Timings
from corral.store import Fenced
from reconciler.appservices import ServiceKeeper
from tests.integration.test_reconciler_loop import IMAGE, controller
from tests.pg import PostgresUnavailable, postgres_dsn
from tests.redisserver import redis_url
from tests.servicekit import unique_app
from tests.support import fresh_store, mark_built, need


@pytest.fixture
def store(tmp_path):
    with fresh_store("sqlite", str(tmp_path)) as s:
        yield s


@pytest.fixture
def keeper(store, tmp_path):
    try:
        admin = postgres_dsn()
    except PostgresUnavailable as e:
        need("postgresql", str(e))
    servers = ServiceServers(postgresql=admin, redis=redis_url(), backup_dir=str(tmp_path / "backups"), backup_margin=0)
    k = ServiceKeeper(store, servers, Timings(services_check=0), "reconciler/r1")
    made = []
    yield k, made
    for app, name, kind in made:
        from services.base import Service
        k.provisioners[kind].drop(Service(app, name, kind))


def spec(on_delete="Retain"):
    return {"source": "./x", "processes": {"web": {"command": "python app.py", "instances": 2}},
            "update": {"maxSurge": 1, "maxUnavailable": 0}, "env": {"GREETING": "hi"},
            "services": {"db": {"type": "postgresql", "onDelete": on_delete}, "cache": {"type": "redis"}}}


def deploy(store, name, app_spec):
    store.put_source("sha256:src", b"x")
    store.apply_apps([{"name": name, "labels": {}, "spec": app_spec, "source_digest": "sha256:src"}], actor="test")
    mark_built(store, name, app_spec, "sha256:src", IMAGE)


def lead(store):
    return store.acquire_lease("leader", "r1", ttl=600).epoch


def conditions(store, app):
    return {c["type"]: (c["status"], c["reason"]) for c in store.get_app(app).status["conditions"]}


def leading(store, keeper, stem):
    """``(keeper, app, controller, epoch)``: an app of both services deployed (their drop after the test is
    booked), and a controller with the keeper, leading."""
    k, made = keeper
    app = unique_app(stem)
    made += [(app, "db", "postgresql"), (app, "cache", "redis")]
    deploy(store, app, spec())
    ctl, _, _, _ = controller(store)
    ctl.services = k
    return k, app, ctl, lead(store)


def test_instances_wait_for_their_services_then_get_their_urls(store, keeper):
    k, app, ctl, epoch = leading(store, keeper, "shop")
    assert ctl.sync(epoch, [app]).plan.boot == (), "nothing boots before its database exists"
    assert conditions(store, app)["ServicesReady"] == ("False", "Provisioning")
    assert k.sync(epoch) == {app}
    assert k.sync(epoch) == set(), "a second pass finds nothing to do"
    rows = {r.name: r for r in store.list_services(app)}
    assert {n: r.state for n, r in rows.items()} == {"db": "ready", "cache": "ready"}
    boot = ctl.sync(epoch, [app]).plan.boot
    assert len(boot) == 2
    assert conditions(store, app)["ServicesReady"] == ("True", "Ready")
    env = boot[0].spec["env"]
    assert env["GREETING"] == "hi" and env["REDIS_KEY_PREFIX"] == f"{app}:"
    assert env["DATABASE_URL"] == env["DB_URL"] and env["REDIS_URL"] == env["CACHE_URL"]
    with psycopg2.connect(env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == f"corral_{app}_db"
    redis.Redis.from_url(env["REDIS_URL"]).set(f"{app}:visits", 1)
    [rev] = store.list_revisions(app)
    assert "DATABASE_URL" not in rev.spec.get("env", {}), "the history keeps the spec as applied, not the secrets"
    reasons = [e.reason for e in store.list_events("app", app)]
    assert reasons.count("ServiceReady") == 2


def test_a_rotation_rolls_the_instances_then_retires_the_old_login(store, keeper):
    k, app, ctl, epoch = leading(store, keeper, "rot")
    k.sync(epoch)
    old_url = ctl.sync(epoch, [app]).plan.boot[0].spec["env"]["DATABASE_URL"]
    store.request_rotation(app, "db")
    assert k.sync(epoch) == {app}
    row = {r.name: r for r in store.list_services(app)}["db"]
    assert (row.generation, row.old_generations, row.rotate_requested) == (2, (1,), False)
    psycopg2.connect(old_url).close()     # the old login still works while instances move
    desired = store.list_desired(app)
    k.sync(epoch, lambda: desired, lambda a: {d.id for d in desired})
    assert {r.name: r for r in store.list_services(app)}["db"].old_generations == (1,), \
        "the old login stays while an instance still carries it"
    new_url = k.url(row)
    rolled = [dataclasses.replace(d, spec={**d.spec, "env": {**d.spec["env"], "DATABASE_URL": new_url,
                                                            "DB_URL": new_url}}) for d in desired]
    k.sync(epoch, lambda: rolled, lambda a: {d.id for d in rolled})
    assert {r.name: r for r in store.list_services(app)}["db"].old_generations == ()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(old_url).close()
    psycopg2.connect(new_url).close()


@pytest.mark.parametrize("on_delete", ["Retain", "Delete"])
def test_delete_keeps_or_drops_after_a_final_verified_backup(store, keeper, on_delete):
    k, made = keeper
    app = unique_app("del")
    made += [(app, "db", "postgresql"), (app, "cache", "redis")]
    deploy(store, app, spec(on_delete))
    epoch = lead(store)
    k.sync(epoch)
    db = {r.name: r for r in store.list_services(app)}["db"]
    with psycopg2.connect(k.url(db)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    store.mark_app_deleting(app, actor="test")
    k.sync(epoch)
    rows = {r.name: r for r in store.list_services(app)}
    assert rows["cache"].state == "retained"
    if on_delete == "Retain":
        assert rows["db"].state == "retained" and "onDelete: Retain" in rows["db"].message
        psycopg2.connect(k.url(db)).close()
        assert store.list_service_backups(app) == []
    else:
        assert "db" not in rows
        [final] = store.list_service_backups(app, "db")
        assert final.verified and final.manifest["facts"]["tables"]["public.t"][0] == 1
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(k.url(db)).close()
        assert any(e.reason == "ServiceDropped" and final.id in e.message for e in store.list_events("app", app))


def test_a_login_lost_by_its_server_is_made_again(store, keeper):
    k, app, ctl, epoch = leading(store, keeper, "lost")
    k.sync(epoch)
    cache = {r.name: r for r in store.list_services(app)}["cache"]
    admin = redis.Redis.from_url(k.provisioners["redis"].url_)
    admin.execute_command("ACL", "DELUSER", f"corral.{app}.cache.1")     # as a restart without an ACL file would
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(k.url(cache)).ping()
    k.sync(epoch)
    assert redis.Redis.from_url(k.url(cache)).ping(), "the leader saw it gone and made it again, same password"


def test_a_server_that_refuses_leaves_a_failed_row_an_event_and_a_backoff(store, tmp_path):
    from services.redis import RedisProvisioner
    nowhere = RedisProvisioner("redis://127.0.0.1:1", timeout=1)
    k = ServiceKeeper(store, ServiceServers(redis="redis://127.0.0.1:1"), Timings(), "reconciler/r1",
                      provisioners={"redis": nowhere})
    deploy(store, "cached", {**spec(), "services": {"cache": {"type": "redis"}}})
    epoch = lead(store)
    k.sync(epoch, now=100.0)
    [row] = store.list_services("cached")
    assert row.state == "failed" and "Redis at 127.0.0.1:1 refused ACL SETUSER" in row.message
    k.sync(epoch, now=101.0)
    assert [e.reason for e in store.list_events("app", "cached")].count("ServiceFailed") == 1, "it waits its backoff"
    k.sync(epoch, now=102.5)
    assert [e.reason for e in store.list_events("app", "cached")].count("ServiceFailed") == 2


def test_a_scheduled_backup_is_taken_once_per_slot_also_by_a_new_leader(store, keeper):
    k, made = keeper
    app = unique_app("sched")
    made += [(app, "db", "postgresql"), (app, "cache", "redis")]
    deploy(store, app, {**spec(), "backups": {"schedule": "hourly", "keep": {"last": 1}}})
    epoch = lead(store)
    k.sync(epoch)
    assert store.list_service_backups(app) == [], "no slot has come yet"
    later = time.time() + 3700
    k.clock = lambda: later
    k.sync(epoch)
    first = store.list_service_backups(app)
    assert sorted(b.service for b in first) == ["cache", "db"] and all(b.verified and b.slot for b in first)
    k.sync(epoch)
    successor = ServiceKeeper(store, k.servers, Timings(services_check=0), "reconciler/r2", clock=lambda: later)
    successor.sync(lead(store))
    assert store.list_service_backups(app) == first, "each slot once, whoever leads"
    successor.clock = lambda: later + 3600
    successor.sync(lead(store))
    second = store.list_service_backups(app)
    assert len(second) == 2 and not {b.id for b in second} & {b.id for b in first}, "keep: {last: 1} let the first go"
    assert [b.id for b in k.backups.list(app)] == sorted(b.id for b in second), "their files went too"


def test_a_leader_deposed_while_it_backs_up_a_slot_leaves_neither_a_record_nor_a_file(store, keeper):
    k, made = keeper
    app = unique_app("deposed")
    made += [(app, "db", "postgresql"), (app, "cache", "redis")]
    deploy(store, app, {**spec(), "backups": {"schedule": "hourly"}})
    stale = lead(store)
    k.sync(stale)
    store.release_lease("leader", "r1")
    successor = store.acquire_lease("leader", "r2", ttl=600).epoch
    assert successor > stale
    later = time.time() + 3700
    k.clock = lambda: later
    with pytest.raises(Fenced):
        k.sync(stale)     # r1 took a backup of the slot, then learnt at its record that it leads no more
    assert store.list_service_backups(app) == [] and k.backups.list(app) == []
    heir = ServiceKeeper(store, k.servers, Timings(services_check=0), "reconciler/r2", clock=lambda: later)
    heir.sync(successor)
    assert sorted(b.service for b in store.list_service_backups(app)) == ["cache", "db"], "the slot is the heir's"
