"""Replication is not a backup: a cluster on PostgreSQL is backed up, the backup restored into a fresh SQLite
store, a new cluster comes up on it and runs the apps; and the SQLite store backed up and restored into a fresh
PostgreSQL schema holds the same desired state as the original."""
import contextlib
import json
import os
import re
import urllib.request

import pytest

from corral.store import open_store
from tests.cluster.fleet import write_manifest
from tests.e2e.cluster import UpCluster, wait_for
from tests.pg import PostgresUnavailable, postgres_dsn
from tests.support import need, scratch_schema


@pytest.fixture
def pg_schemas():
    """A factory of fresh, empty PostgreSQL schemas (as DSNs); all are dropped at the end."""
    try:
        base = postgres_dsn()
    except PostgresUnavailable as e:
        need("postgresql", str(e))
    with contextlib.ExitStack() as made:
        yield lambda: made.enter_context(scratch_schema(base, prefix="backup"))


def desired_state(dsn):
    """What a restore must carry: each app's declared fields, its revision history, the sources' bytes."""
    store = open_store(dsn)
    try:
        apps = {a.name: (a.labels, a.spec, a.source_digest, a.generation, a.deleting) for a in store.list_apps()}
        history = {name: [(r.revision, r.hash, r.spec, r.source_digest) for r in store.list_revisions(name)]
                   for name in apps}
        sources = {a[2]: store.get_source(a[2]) for a in apps.values()}
    finally:
        store.close()
    return apps, history, sources


def serving(cluster, app):
    return [i for i in cluster.instances(app) if i["state"] == "running" and i["ready"]]


def backup_path(stdout):
    m = re.match(r"backup written to (\S+) \(", stdout)
    assert m, f"backup did not say where it wrote: {stdout!r}"
    return m.group(1)


def test_a_postgresql_backup_restored_into_sqlite_runs_the_apps_and_round_trips(tmp_path, pg_schemas):
    first_dsn = pg_schemas()
    os.makedirs(tmp_path / "first")
    first = UpCluster(tmp_path / "first", nodes=2, store=first_dsn)
    try:
        keep = write_manifest(str(tmp_path / "first"), "keep", 2)
        first.corral("apply", "-f", keep, "--wait", "--timeout", "180s")
        # A second revision of keep (history to carry) and an app scaled to 0.
        first.corral("apply", "-f", write_manifest(str(tmp_path / "first"), "keep", 2, {"env": {"GREETING": "v2"}}),
                     "--wait", "--timeout", "180s")
        # --wait: idle's first revision is recorded by the leader after the apply; a backup taken before that
        # would rightly lack it while the store read below, after `down`, holds it.
        first.corral("apply", "-f", write_manifest(str(tmp_path / "first"), "idle", 0), "--wait", "--timeout", "180s")
        out = first.corral("backup", "--to", str(tmp_path / "backups")).stdout
    finally:
        assert first.down() == 0, "the first cluster did not stop cleanly:\n" + first.tail()
    path = backup_path(out)
    original = desired_state(first_dsn)
    assert set(original[0]) == {"keep", "idle"} and len(original[1]["keep"]) == 2

    # PostgreSQL -> a fresh SQLite store, where `corral up` will find it.
    second_dir = tmp_path / "second"
    sqlite_dsn = f"sqlite:///{second_dir / 'data' / 'corral.db'}"
    os.makedirs(second_dir / "data")
    restored = first.corral("restore", path, "--store", sqlite_dsn)
    # up's three named tokens are carried (by their hashes): the restored cluster takes the same credentials.
    assert re.match(r"restored \S+ \(taken \S+\) into sqlite:///\S+: 3 api_tokens, \d+ apps", restored.stdout), \
        restored.stdout
    assert desired_state(sqlite_dsn) == original

    # Into a store that is no longer empty: refused, one sentence, nothing changed.
    again = first.corral("restore", path, "--store", sqlite_dsn, check=False)
    assert again.returncode != 0 and again.stderr.startswith("error: ") and again.stderr.count("\n") == 1
    assert "not empty" in again.stderr and desired_state(sqlite_dsn) == original

    # A cluster on the restored store runs the apps as they were declared.
    second = UpCluster(second_dir, nodes=2)
    try:
        wait_for("keep's two instances serving on the restored cluster",
                 lambda: len(serving(second, "keep")) == 2, timeout=180)
        apps = {a["name"]: a for a in json.loads(second.corral("get", "apps", "-o", "json").stdout)}
        assert set(apps) == {"keep", "idle"} and apps["idle"]["desired"] == 0 and apps["keep"]["desired"] == 2
        for inst in serving(second, "keep"):
            with urllib.request.urlopen(f"http://{inst['address']}:{inst['port']}/", timeout=5) as r:
                assert json.loads(r.read())["greeting"] == "v2"
        history = second.corral("rollout", "history", "keep").stdout
        assert len([line for line in history.splitlines()[1:] if line.strip()]) == 2, history
        # SQLite -> a fresh PostgreSQL schema (read straight from the store, as with no reconciler up).
        out = second.corral("backup", "--store", sqlite_dsn, "--to", str(tmp_path / "backups2")).stdout
    finally:
        assert second.down() == 0, "the restored cluster did not stop cleanly:\n" + second.tail()
    third_dsn = pg_schemas()
    second.corral("restore", backup_path(out), "--store", third_dsn)
    assert desired_state(third_dsn) == desired_state(sqlite_dsn)
    assert desired_state(third_dsn)[0] == original[0]
