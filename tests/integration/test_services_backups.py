"""App services against the real PostgreSQL and Redis: provisioning, backups proven by restoring, restore.

Backup -> drop a table -> restore -> the data is back, and the verification
agrees; a tampered file is refused by restore; a backup into a folder without
room is refused with a sentence, and a dump that fills the disk leaves no file.
"""
import fcntl
import os
import stat
import subprocess
import time

import psycopg2
import pytest
import redis

from services.backups import STALE_TEMP, BackupRefused, Backups
from services.base import Credential
from services.names import pg_scratch, pg_scratch_lock
from tests.servicekit import provisioned  # noqa: F401  (fixture)
from tests.support import need_root


def pg_run(url, *statements):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            out = None
            for s in statements:
                cur.execute(s)
                out = cur.fetchall() if cur.description else out
            return out
    finally:
        conn.close()


def fill_visits(url, n=500):
    pg_run(url, "CREATE TABLE visits (id serial PRIMARY KEY, page text, at timestamptz DEFAULT now())",
           f"INSERT INTO visits (page) SELECT 'page-' || g FROM generate_series(1, {n}) g",
           "CREATE TABLE notes (body text)", "INSERT INTO notes VALUES ('keep me'), (NULL)")


def test_ensure_is_idempotent_and_the_url_owns_its_database(provisioned):
    prov, service, cred = provisioned("postgresql")
    prov.ensure(service, cred)   # twice is once
    url = prov.url(service, cred)
    fill_visits(url, 3)
    assert prov.exists(service, cred)
    owner = pg_run(url, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'visits'")[0][0]
    assert owner == f"corral_{service.app}_db", "what a login creates belongs to the service's owner role"


def test_a_postgresql_backup_is_verified_and_restores_a_dropped_table(provisioned, tmp_path):
    prov, service, cred = provisioned("postgresql")
    url = prov.url(service, cred)
    fill_visits(url)
    backups = Backups(str(tmp_path / "backups"))
    b = backups.create(prov, service)
    assert b.verified, b.manifest["verified"]
    assert "2 tables, 502 rows, counts and checksums agree" in b.manifest["verified"]["reason"]
    assert b.manifest["facts"]["tables"]["public.visits"][0] == 500
    assert b.manifest["server_version"].startswith("15") or b.manifest["server_version"]
    for path in (b.path, b.path[:-5] + ".json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(b.path)).st_mode) == 0o700
    assert [x.id for x in backups.list(service.app)] == [b.id]

    pg_run(url, "DROP TABLE visits", "DELETE FROM notes")
    backups.restore(prov, backups.find(service.app, b.id), service)
    assert pg_run(url, "SELECT count(*) FROM visits")[0][0] == 500
    assert pg_run(url, "SELECT body FROM notes ORDER BY body") == [("keep me",), (None,)]
    pg_run(url, "INSERT INTO visits (page) VALUES ('after the restore')")   # the app still owns what came back


def test_a_tampered_backup_is_refused_by_restore(provisioned, tmp_path):
    prov, service, cred = provisioned("postgresql")
    fill_visits(prov.url(service, cred), 10)
    backups = Backups(str(tmp_path))
    b = backups.create(prov, service)
    with open(b.path, "r+b") as f:
        f.seek(-20, os.SEEK_END)
        f.write(b"\0" * 4)
    with pytest.raises(BackupRefused, match=r"does not match its manifest: sha256 .*refusing to restore it"):
        backups.restore(prov, b, service)
    assert pg_run(prov.url(service, cred), "SELECT count(*) FROM visits")[0][0] == 10


def test_a_redis_backup_is_verified_and_restores_the_prefix(provisioned, tmp_path):
    prov, service, cred = provisioned("redis")
    r = redis.Redis.from_url(prov.url(service, cred))
    p = f"{service.app}:"
    r.set(p + "visits", 41)
    r.hset(p + "user:1", mapping={"name": "ada", "visits": 3})
    r.rpush(p + "queue", *range(50))
    r.set(p + "session", "s", ex=600)
    backups = Backups(str(tmp_path))
    b = backups.create(prov, service)
    assert b.verified and b.manifest["facts"]["keys"] == 4, b.manifest
    r.delete(p + "user:1")
    r.set(p + "visits", 0)
    r.set(p + "later", 1)
    backups.restore(prov, b, service)
    assert r.hgetall(p + "user:1") == {b"name": b"ada", b"visits": b"3"}
    assert r.get(p + "visits") == b"41" and r.llen(p + "queue") == 50
    assert 0 < r.ttl(p + "session") <= 600 and not r.exists(p + "later")
    admin = redis.Redis.from_url(prov.url_)
    assert not list(admin.scan_iter(match="_corral:scratch:*")), "the scratch copy was deleted"


def test_a_drop_removes_data_and_logins(provisioned):
    prov, service, cred = provisioned("redis")
    redis.Redis.from_url(prov.url(service, cred)).set(f"{service.app}:x", 1)
    prov.drop(service)
    assert not prov.exists(service, cred)
    assert not redis.Redis.from_url(prov.url_).exists(f"{service.app}:x")
    pg, pservice, pcred = provisioned("postgresql")
    pg.drop(pservice)
    assert not pg.exists(pservice, pcred)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(pg.url(pservice, pcred)).close()


def test_rotation_adds_a_login_and_retires_the_old_one(provisioned):
    prov, service, cred = provisioned("postgresql")
    old = psycopg2.connect(prov.url(service, cred))
    new = Credential(2, "second-password")
    prov.ensure(service, new)
    pg_run(prov.url(service, new), "CREATE TABLE t (x int)")
    with old.cursor() as cur:      # the old login works on while the instances move
        cur.execute("SELECT count(*) FROM t")
    prov.retire(service, 1)
    assert not prov.exists(service, cred) and prov.exists(service, new)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(prov.url(service, cred)).close()


@pytest.fixture
def small_disk(tmp_path):
    need_root("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_backup_into_a_full_disk_is_refused_and_leaves_nothing(provisioned, small_disk):
    prov, service, cred = provisioned("postgresql")
    pg_run(prov.url(service, cred), "CREATE TABLE big AS SELECT md5(random()::text) || md5(random()::text) AS v "
                                    "FROM generate_series(1, 60000)")
    with pytest.raises(BackupRefused, match=rf"^not enough free space in {small_disk}/{service.app}/db for a backup"):
        Backups(str(small_disk)).create(prov, service)
    with pytest.raises(Exception, match="pg_dump failed|No space left"):
        Backups(str(small_disk), margin=0, free_space=lambda p: 1 << 40).create(prov, service)   # the check fooled:
    leftovers = [n for _, _, files in os.walk(small_disk) for n in files]                      # the disk fills
    assert leftovers == [], "a failed backup left a file behind"


def test_verification_fails_when_the_restored_copy_differs_from_what_was_dumped(provisioned, tmp_path):
    prov, service, cred = provisioned("postgresql")
    fill_visits(prov.url(service, cred), 20)
    path = tmp_path / "b.dump"
    with open(path, "wb") as out:
        facts = prov.backup(service, out)
    told = {**facts, "tables": {**facts["tables"], "public.visits": [21, facts["tables"]["public.visits"][1]]}}
    verdict = prov.verify(service, str(path), told)
    assert not verdict.ok and verdict.reason == "table public.visits: 21 rows were dumped, 20 restored"
    path.write_bytes(path.read_bytes()[:200])
    verdict = prov.verify(service, str(path), facts)
    assert not verdict.ok and verdict.reason.startswith("restoring it into a scratch database failed: pg_restore")


def test_a_redis_payload_that_does_not_restore_fails_the_verification(provisioned, tmp_path):
    prov, service, cred = provisioned("redis")
    redis.Redis.from_url(prov.url(service, cred)).set(f"{service.app}:k", "value")
    path = tmp_path / "b.redis"
    with open(path, "wb") as out:
        facts = prov.backup(service, out)
    data = bytearray(path.read_bytes())
    data[-12] ^= 0xFF                        # a byte of the payload's checksum
    path.write_bytes(bytes(data))
    verdict = prov.verify(service, str(path), facts)
    assert not verdict.ok and "Redis refused RESTORE" in verdict.reason
    admin = redis.Redis.from_url(prov.url_)
    assert not list(admin.scan_iter(match="_corral:scratch:*")), "the scratch keys were deleted"


def test_two_backups_in_one_second_keep_both_files(provisioned, tmp_path):
    prov, service, cred = provisioned("redis")
    redis.Redis.from_url(prov.url(service, cred)).set(f"{service.app}:k", "v")
    backups = Backups(str(tmp_path), clock=lambda: 1796392800.0)
    first, second = backups.create(prov, service), backups.create(prov, service)
    assert (first.id, second.id) == (f"{service.app}-cache-20261204T140000Z", f"{service.app}-cache-20261204T140000Z-2")
    assert sorted(os.listdir(os.path.dirname(first.path))) == sorted(
        [first.id + ".dump", first.id + ".json", second.id + ".dump", second.id + ".json"]), "no temporary file left"


def scratch_databases(admin_url):
    return {r[0] for r in pg_run(admin_url, "SELECT datname FROM pg_database WHERE datname LIKE 'corral\\_\\_scratch\\_%'")}


def test_a_verification_drops_the_scratch_databases_of_killed_verifiers_and_spares_live_ones(provisioned, tmp_path):
    prov, service, cred = provisioned("postgresql")
    fill_visits(prov.url(service, cred), 5)
    orphan, live = pg_scratch(), pg_scratch()
    pg_run(prov.admin_url, f'CREATE DATABASE "{orphan}"', f'CREATE DATABASE "{live}"')
    holder = psycopg2.connect(prov.admin_url)     # a verification still running elsewhere holds its lock
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", pg_scratch_lock(live))
        b = Backups(str(tmp_path)).create(prov, service)
        assert b.verified, b.manifest["verified"]
        left = scratch_databases(prov.admin_url)
        assert orphan not in left, "the scratch database of a verifier that died was left on the server"
        assert live in left, "a scratch database whose verification holds its lock was dropped"
    finally:
        holder.close()
        pg_run(prov.admin_url, f'DROP DATABASE IF EXISTS "{orphan}"', f'DROP DATABASE IF EXISTS "{live}"')


def test_a_backup_removes_the_temporary_files_of_killed_backups_and_spares_running_ones(provisioned, tmp_path):
    prov, service, cred = provisioned("redis")
    redis.Redis.from_url(prov.url(service, cred)).set(f"{service.app}:k", "v")
    backups = Backups(str(tmp_path))
    folder = tmp_path / service.app / service.name
    folder.mkdir(parents=True)
    old = time.time() - 2 * STALE_TEMP
    killed, running, just_opened = (folder / f"backup.tmp-{n}" for n in ("dead", "live", "new"))
    for path in (killed, running, just_opened):
        path.write_bytes(b"part of a dump")
    for path in (killed, running):
        os.utime(path, (old, old))
    with open(running, "rb") as held:            # a backup in progress elsewhere holds its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        assert backups.create(prov, service).verified
        assert not killed.exists(), "the temporary file of a killed backup was left behind"
        assert running.exists() and just_opened.exists(), "a temporary file of a running backup was removed"


def test_the_scratch_copy_of_a_verifier_killed_before_it_deleted_it_expires_by_itself(provisioned, tmp_path,
                                                                                      monkeypatch):
    from services import redis as redis_service
    prov, service, cred = provisioned("redis")
    r = redis.Redis.from_url(prov.url(service, cred))
    r.set(f"{service.app}:visits", 41)
    r.set(f"{service.app}:session", "s", ex=600)
    b = Backups(str(tmp_path)).create(prov, service)
    assert b.verified
    monkeypatch.setattr(type(prov), "_delete", lambda self, keys: None)   # as if killed before its cleanup
    assert prov.verify(service, b.path, b.manifest["facts"]).ok
    admin = redis.Redis.from_url(prov.url_)
    left = list(admin.scan_iter(match="_corral:scratch:*"))
    try:
        assert len(left) == 2
        assert all(0 < admin.pttl(k) <= redis_service.SCRATCH_TTL_MS for k in left), "a scratch key would stay forever"
    finally:
        admin.delete(*left)
