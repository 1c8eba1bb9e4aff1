"""Backups: one consistent snapshot out of either backend, restored into the other, refused over live state."""
import gzip
import json
import subprocess
import sys

import pytest

from corral.store import Conflict, open_store
from corral.store import backup
from corral.store.postgres import PostgresStore
from corral.store.sqlite import SQLiteStore
from corral.store.schema import MIGRATIONS


def fill(store):
    """Two apps (one being deleted), a source archive with every byte value, events, a lease and a node."""
    store.put_source("sha256:abc", bytes(range(256)) * 4)
    store.apply_apps([{"name": "web", "labels": {"team": "ä"}, "spec": {"processes": {"web": {"instances": 2}}},
                       "source_digest": "sha256:abc"},
                      {"name": "gone", "labels": {}, "spec": {"processes": {}}, "source_digest": "sha256:abc"}],
                     actor="cli")
    store.mark_app_deleting("gone", actor="cli")
    store.add_event("node", "n1", "Ready", "node n1 is ready", "reconciler/r1")
    store.acquire_lease("leader", "r1", 10)
    store.upsert_node("n1", "10.0.0.1", {}, {"cpu": 2}, 1.0)


def desired_state(store):
    """What a restore must bring back: apps (without their row versions' times), sources, event history."""
    apps = [(a.name, a.labels, a.spec, a.source_digest, a.generation, a.deleting) for a in store.list_apps()]
    events = [(e.kind, e.name, e.reason, e.message, e.actor) for e in store.list_events(limit=1000)]
    return apps, store.get_source("sha256:abc"), events


def test_schema_columns_follow_creates_adds_and_drops():
    got = backup.schema_columns([["CREATE TABLE t (\n a TEXT NOT NULL,\n b {bool},\n PRIMARY KEY (a))",
                                  "CREATE TABLE gone (x TEXT)"],
                                 ["ALTER TABLE t ADD COLUMN c {blob}", "DROP TABLE gone"]])
    assert got == {"t": {"a": "TEXT", "b": "{bool}", "c": "{blob}"}}


def test_a_backup_carries_declared_state_not_observed_state():
    carried = backup.carried_tables()
    assert {"apps", "sources", "events"} <= set(carried)
    assert not set(carried) & {"nodes", "leases", "desired_instances", "builds", "meta"}
    assert "id" not in carried["events"], "serial ids are renumbered on restore, not carried"
    assert backup.schema_columns(MIGRATIONS).keys() >= carried.keys()


def test_backup_then_restore_into_the_other_backend(store, backend, tmp_path, request):
    fill(store)
    doc = backup.dump(store, now=0)
    path = backup.write(doc, str(tmp_path / "backups"))
    assert path.endswith("corral-backup-19700101T000000Z.json.gz")
    on_disk = json.loads(gzip.open(path).read())
    assert on_disk["format"] == "corral-backup" and on_disk["tables"]["apps"]["columns"][0] == "name"
    assert "nodes" not in on_disk["tables"] and "leases" not in on_disk["tables"]

    if backend == "sqlite":
        other = PostgresStore(request.getfixturevalue("pg_schema_dsn"))
    else:
        other = SQLiteStore(str(tmp_path / "other" / "corral.db"))
    other.migrate()
    try:
        counts = backup.restore(other, backup.read(path))
        assert counts["apps"] == 2 and counts["sources"] == 1
        assert desired_state(other) == desired_state(store)
        assert other.list_nodes() == [] and other.get_lease("leader") is None
        # The store's own counters go on from the restored rows.
        other.add_event("app", "web", "Configured", "after the restore", "cli")
        assert other.list_events(limit=1000)[-1].message == "after the restore"
        assert other.apps_version() > 0

        # And back again: a backup of the restored store restores to the same state.
        again = backup.dump(other)
        assert again["tables"]["apps"] == doc["tables"]["apps"]
        assert again["tables"]["sources"] == doc["tables"]["sources"]
    finally:
        other.close()


def test_restore_into_a_store_that_is_not_empty_is_refused_unless_forced(store):
    fill(store)
    doc = json.loads(json.dumps(backup.dump(store)))
    store.apply_apps([{"name": "extra", "labels": {}, "spec": {}, "source_digest": "sha256:abc"}], actor="cli")
    with pytest.raises(Conflict, match=r"the store is not empty \(3 apps, .*--force"):
        backup.restore(store, doc)
    assert {a.name for a in store.list_apps()} == {"web", "gone", "extra"}
    backup.restore(store, doc, force=True)
    assert {a.name for a in store.list_apps()} == {"web", "gone"}


def test_the_backup_reads_one_snapshot(store, open_twin):
    """A write that commits while the backup reads is not half in it: the backup is as of its first read."""
    fill(store)
    twin = open_twin()
    original = store.read_snapshot

    def with_a_write_after_the_first_read(work):
        def interleaved(cur):
            cur.execute("SELECT COUNT(*) FROM sources")   # the snapshot starts here
            twin.apply_apps([{"name": "late", "labels": {}, "spec": {}, "source_digest": "sha256:abc"}], actor="cli")
            return work(cur)
        return original(interleaved)
    store.read_snapshot = with_a_write_after_the_first_read
    doc = backup.dump(store)
    assert [r[0] for r in doc["tables"]["apps"]["rows"]] == ["gone", "web"]
    assert not any(r[2] == "late" for r in doc["tables"]["events"]["rows"])
    assert {a.name for a in twin.list_apps()} == {"gone", "late", "web"}


@pytest.mark.parametrize("content, sentence", [
    (b"not gzip, not json", "is not a readable corral backup"),
    (json.dumps({"format": "something-else"}).encode(), "is not a corral backup"),
    (json.dumps({"format": "corral-backup", "version": 99}).encode(), "format version 99"),
    (json.dumps({"format": "corral-backup", "version": 1, "schema_version": 999, "tables": {}}).encode(),
     "newer than this corral"),
], ids=["garbage", "other-format", "future-format", "future-schema"])
def test_a_file_that_is_not_a_backup_is_refused_with_one_sentence(tmp_path, content, sentence):
    path = tmp_path / "b.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=sentence):
        backup.read(str(path))


def test_cli_backup_and_restore_from_sqlite_to_sqlite(tmp_path):
    src = f"sqlite:///{tmp_path / 'a.db'}"
    dst = f"sqlite:///{tmp_path / 'b.db'}"
    store = open_store(src)
    fill(store)
    store.close()

    def corral(*args):
        return subprocess.run([sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=60)
    out = corral("backup", "--store", src, "--to", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    path = out.stdout.split("backup written to ", 1)[1].split(" (", 1)[0]
    assert "2 apps" in out.stdout
    done = corral("restore", path, "--store", dst)
    assert done.returncode == 0 and "2 apps" in done.stdout, done.stderr
    again = corral("restore", path, "--store", dst)
    assert again.returncode == 1
    assert again.stderr.startswith("error: the store is not empty (2 apps") and again.stderr.count("\n") == 1
    assert corral("restore", path, "--store", dst, "--force").returncode == 0
