"""Creating and upgrading the schema, by one daemon or several at once."""
import threading

import pytest

from corral.store import sql
from corral.store.base import Conflict


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


def test_a_newer_schema_is_refused(store, monkeypatch):
    monkeypatch.setattr(sql, "SCHEMA_VERSION", sql.SCHEMA_VERSION - 1)
    monkeypatch.setattr(sql, "MIGRATIONS", sql.MIGRATIONS[:-1])
    with pytest.raises(Conflict, match="newer than this corral"):
        store.migrate()


def test_open_store_creates_the_sqlite_folder_and_schema(tmp_path):
    from corral.store import open_store
    path = tmp_path / "deep" / "er" / "corral.db"
    store = open_store(f"sqlite://{path}")
    try:
        assert path.exists() and store.apps_version() == 0
    finally:
        store.close()
