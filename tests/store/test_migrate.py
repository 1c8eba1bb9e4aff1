"""Creating and upgrading the schema, by one daemon or several at once."""
import threading

import pytest

from corral.store import sql
from corral.store.base import Fenced, NewerSchema


def test_migrate_twice_keeps_the_data(store):
    store.apply_apps([{"name": "a", "labels": {}, "spec": {}, "source_digest": "d"}], actor="cli")
    store.migrate()
    assert [a.name for a in store.list_apps()] == ["a"]


def test_concurrent_migrations_of_an_empty_store(open_twin):
    stores = [open_twin() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors = []

    def migrate(s):
        barrier.wait()
        try:
            s.migrate()
        except Exception as exc:  # recorded, asserted below
            errors.append(exc)
    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].apps_version() == 0


# What the next minor release might add: a table, and a column that may be NULL (additive, as they must be).
NEXT = ["CREATE TABLE future_things (name TEXT PRIMARY KEY)", "ALTER TABLE apps ADD COLUMN future_field TEXT"]


def migrate_one_further(store, monkeypatch):
    """Migrate ``store`` as the next release would (one more migration), then be this release again."""
    monkeypatch.setattr(sql, "MIGRATIONS", sql.MIGRATIONS + [NEXT])
    monkeypatch.setattr(sql, "SCHEMA_VERSION", sql.SCHEMA_VERSION + 1)
    store.migrate()
    monkeypatch.undo()


def test_a_newer_schema_is_kept_read_and_written_but_never_led(store, monkeypatch):
    app = {"name": "a", "labels": {}, "spec": {}, "source_digest": "d"}
    store.apply_apps([app], actor="cli")
    migrate_one_further(store, monkeypatch)
    store.migrate()   # this release's migrate leaves the newer schema as it is
    assert store.schema_version() == sql.SCHEMA_VERSION + 1
    store.apply_apps([dict(app, labels={"x": "y"})], actor="cli")
    assert [(a.name, a.labels) for a in store.list_apps()] == [("a", {"x": "y"})]
    before = store.get_lease("leader")
    with pytest.raises(NewerSchema, match=f"version {sql.SCHEMA_VERSION + 1}, newer than this corral's"):
        store.acquire_lease("leader", "old-reconciler", ttl=10)
    assert store.get_lease("leader") == before   # nothing taken, no epoch spent


def test_migrating_a_schema_in_use_fences_the_leader(store, monkeypatch):
    lease = store.acquire_lease("leader", "old-leader", ttl=60)
    store.write_desired(lease.epoch, [], [])
    migrate_one_further(store, monkeypatch)
    after = store.get_lease("leader")
    assert (after.holder, after.epoch) == (None, lease.epoch + 1)
    with pytest.raises(Fenced):
        store.write_desired(lease.epoch, [], [])


def test_a_fresh_store_is_created_at_this_version(store):
    assert store.schema_version() == sql.SCHEMA_VERSION


def test_a_store_never_migrated_is_at_version_0(backend, request, tmp_path):
    from corral.store import open_store
    from tests.support import scratch_schema
    if backend == "sqlite":
        empty = open_store(f"sqlite://{tmp_path / 'empty.db'}", migrate=False)
        assert empty.schema_version() == 0
        empty.close()
        return
    with scratch_schema(request.getfixturevalue("pg_dsn")) as dsn:
        empty = open_store(dsn, migrate=False)
        assert empty.schema_version() == 0
        empty.close()


def test_open_store_creates_the_sqlite_folder_and_schema(tmp_path):
    from corral.store import open_store
    path = tmp_path / "deep" / "er" / "corral.db"
    store = open_store(f"sqlite://{path}")
    try:
        assert path.exists() and store.apps_version() == 0
    finally:
        store.close()
