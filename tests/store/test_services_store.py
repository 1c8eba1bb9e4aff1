"""App services and their backups in the store (both backends): fenced writes, rotation requests, listings."""
import dataclasses

import pytest

from corral.store import Conflict, Fenced, ServiceBackupRecord, ServiceRecord
from corral.store import sql
from corral.store.schema import MIGRATIONS


def lead(store):
    return store.acquire_lease("leader", "r1", ttl=60).epoch


def record(app="hello", name="db", **kw):
    fields = {"type": "postgresql", "server": "postgresql://admin@db1:5432/postgres", "state": "ready",
              "generation": 1, "password": "pw", **kw}
    return ServiceRecord(app=app, name=name, **fields)


def test_a_service_is_put_listed_replaced_and_deleted(store):
    epoch = lead(store)
    store.put_service(epoch, record())
    store.put_service(epoch, record(app="another", name="cache"))
    [first] = store.list_services("hello")
    assert (first.state, first.generation, first.password, first.old_generations) == ("ready", 1, "pw", ())
    store.put_service(epoch, dataclasses.replace(record(), generation=2, password="pw2", old_generations=(1,)))
    [again] = store.list_services("hello")
    assert (again.generation, again.password, again.old_generations) == (2, "pw2", (1,))
    assert again.created_at == first.created_at and again.updated_at >= first.updated_at
    assert [(s.app, s.name) for s in store.list_services()] == [("another", "cache"), ("hello", "db")]
    store.delete_service(epoch, "hello", "db")
    assert store.list_services("hello") == []


def test_service_writes_are_fenced(store):
    epoch = lead(store)
    with pytest.raises(Fenced):
        store.put_service(epoch + 1, record())
    store.put_service(epoch, record())
    with pytest.raises(Fenced):
        store.delete_service(epoch - 1, "hello", "db")
    assert len(store.list_services()) == 1


def test_a_rotation_is_requested_of_a_known_service_only(store):
    store.put_service(lead(store), record())
    assert store.request_rotation("hello", "db") is True
    assert store.request_rotation("hello", "nope") is False
    assert store.list_services("hello")[0].rotate_requested is True


def backup(bid, at, service="db", verified=True, slot=None):
    return ServiceBackupRecord(id=bid, app="hello", service=service, type="postgresql", path=f"/b/{bid}.dump",
                               size=10, sha256="ab" * 32, verified=verified, reason="agree",
                               manifest={"id": bid, "facts": {"tables": {}}}, created_at=at, slot=slot)


def test_backups_are_recorded_and_listed_oldest_first(store):
    store.add_service_backup(backup("b2", 2.0))
    store.add_service_backup(backup("b1", 1.0, verified=False))
    store.add_service_backup(backup("c1", 3.0, service="cache"))
    assert [b.id for b in store.list_service_backups("hello")] == ["b1", "b2", "c1"]
    assert [b.id for b in store.list_service_backups("hello", "db")] == ["b1", "b2"]
    assert store.list_service_backups("hello", "db")[0].verified is False
    assert store.list_service_backups("hello", "db")[1].manifest == {"id": "b2", "facts": {"tables": {}}}
    store.delete_service_backup("b1")
    assert [b.id for b in store.list_service_backups()] == ["b2", "c1"]


def test_a_service_made_by_hand_is_added_once_and_unfenced(store):
    assert store.add_service(record(name="copy", state="retained")) is True
    assert store.add_service(record(name="copy")) is False
    [copy] = store.list_services("hello")
    assert (copy.name, copy.state) == ("copy", "retained")


def test_a_slots_backup_is_the_leaders_and_the_slots_only_one(store):
    epoch, slot = lead(store), "2026-12-03T07:00:00+00:00"
    with pytest.raises(Fenced):   # a leader deposed while it took the backup
        store.add_service_backup(backup("stale", 1.0, slot=slot), epoch=epoch - 1)
    store.add_service_backup(backup("first", 2.0, slot=slot), epoch=epoch)
    with pytest.raises(Conflict, match="has its backup already \\(first\\)"):
        store.add_service_backup(backup("second", 3.0, slot=slot), epoch=epoch)
    store.add_service_backup(backup("asked", 4.0))   # a backup asked for has no slot, and no leader
    assert [(b.id, b.slot) for b in store.list_service_backups()] == [("first", slot), ("asked", None)]


def test_the_migration_keeps_the_first_backup_of_a_slot_taken_twice_as_the_slots(store_dsn, open_twin, monkeypatch):
    """Before this schema two leaders could both record a slot: the later one stays, as a backup with no slot."""
    before = next(i for i, m in enumerate(MIGRATIONS) if any("service_backups_slot" in step for step in m))
    monkeypatch.setattr(sql, "SCHEMA_VERSION", before)   # the schema before the slot's migration, whatever follows it
    monkeypatch.setattr(sql, "MIGRATIONS", MIGRATIONS[:before])
    old = open_twin()
    old.migrate()
    for bid, at in (("later", 2.0), ("earlier", 1.0), ("other-slot", 3.0)):   # as the old release wrote them
        old.write_transaction(lambda cur, bid=bid, at=at: cur.execute(
            "INSERT INTO service_backups (id, app, service, type, path, size, sha256, verified, reason, manifest, "
            "slot, created_at) VALUES (?, 'hello', 'db', 'postgresql', '/b', 1, 'ab', ?, 'agree', '{}', ?, ?)",
            (bid, True, "slot-b" if bid == "other-slot" else "slot-a", at)))
    monkeypatch.undo()
    new = open_twin()
    new.migrate()
    assert [(b.id, b.slot) for b in new.list_service_backups()] == [
        ("earlier", "slot-a"), ("later", None), ("other-slot", "slot-b")]
