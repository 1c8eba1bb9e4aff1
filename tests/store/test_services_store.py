"""App services and their backups in the store (both backends): fenced writes, rotation requests, listings."""
import dataclasses

import pytest

from corral.store import Fenced, ServiceBackupRecord, ServiceRecord


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


def test_backups_are_recorded_and_listed_oldest_first(store):
    def backup(bid, at, service="db", verified=True):
        return ServiceBackupRecord(id=bid, app="hello", service=service, type="postgresql", path=f"/b/{bid}.dump",
                                   size=10, sha256="ab" * 32, verified=verified, reason="agree",
                                   manifest={"id": bid, "facts": {"tables": {}}}, created_at=at)
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
