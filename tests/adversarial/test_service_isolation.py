"""Two apps' services on one server: each app is an attacker of the other's data.

App A holds the credentials its instances are given (DATABASE_URL, REDIS_URL)
and tries everything those allow against app B: connecting to B's database,
reading B's keys, and the server-wide Redis commands that would wipe, reconfigure
or list the whole server. (The servers of this machine let local processes in
without a password, as `corral up` says; what is tried here is what an app's own
credentials allow, which is all an app has where the servers ask for passwords.)
"""
import re

import psycopg2
import pytest
import redis

from services.names import pg_database
from tests.servicekit import ensured, unique_app

REFUSED = re.compile(r"no permissions|can't access|not allowed")


@pytest.fixture(scope="module")
def two_apps():
    """Apps a-* and b-*, each with a PostgreSQL and a Redis service (made once for the module)."""
    a, b = unique_app("a"), unique_app("b")
    with ensured() as make:
        yield {kind: (make(kind, a), make(kind, b)) for kind in ("postgresql", "redis")}


def refused(client, *command):
    """Whether Redis refused ``command`` to ``client`` for want of rights."""
    with pytest.raises(redis.exceptions.ResponseError) as e:
        client.execute_command(*command)
    return REFUSED.search(str(e.value))


def test_app_a_cannot_connect_to_app_bs_database(two_apps):
    (prov, a, a_cred), (_, b, b_cred) = two_apps["postgresql"]
    conn = psycopg2.connect(prov.url(b, b_cred))
    conn.autocommit = True
    conn.cursor().execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('b only')")
    conn.close()
    a_url_to_b = prov.url(a, a_cred).rsplit("/", 1)[0] + "/" + pg_database(b.app, b.name)
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(a_url_to_b).close()
    for public_db in ("postgres", "template1"):   # nor does it get a foothold elsewhere to look from
        try:
            conn = psycopg2.connect(prov.url(a, a_cred).rsplit("/", 1)[0] + "/" + public_db)
        except psycopg2.OperationalError:
            continue
        with conn, conn.cursor() as cur:
            cur.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (False, False, False)
        conn.close()


def test_app_a_cannot_read_or_write_bs_keys(two_apps):
    (prov, a, a_cred), (_, b, b_cred) = two_apps["redis"]
    redis.Redis.from_url(prov.url(b, b_cred)).set(f"{b.app}:secret", "b only")
    mine = redis.Redis.from_url(prov.url(a, a_cred))
    mine.set(f"{a.app}:ok", 1)   # its own prefix works
    for attempt in (("GET", f"{b.app}:secret"), ("SET", f"{b.app}:secret", "x"), ("DEL", f"{b.app}:secret"),
                    ("RENAME", f"{b.app}:secret", f"{a.app}:stolen"), ("COPY", f"{b.app}:secret", f"{a.app}:c"),
                    ("EVAL", "return redis.call('GET', KEYS[1])", 1, f"{b.app}:secret"),
                    ("EVAL", f"return redis.call('GET', '{b.app}:secret')", 0),
                    ("SUBSCRIBE", f"{b.app}:events")):
        assert refused(mine, *attempt), attempt
    assert redis.Redis.from_url(prov.url(b, b_cred)).get(f"{b.app}:secret") == b"b only"


@pytest.mark.parametrize("command", [("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "dir", "/"),
                                     ("KEYS", "*"), ("SCAN", "0"), ("RANDOMKEY",), ("DEBUG", "SLEEP", "0"),
                                     ("SHUTDOWN",), ("ACL", "LIST"), ("MONITOR",), ("SELECT", "1"),
                                     ("SWAPDB", "0", "1"), ("PUBSUB", "CHANNELS"), ("SCRIPT", "FLUSH"),
                                     ("FUNCTION", "FLUSH"), ("CLIENT", "LIST"), ("INFO",), ("DBSIZE",),
                                     ("PSUBSCRIBE", "*"), ("SORT", "x", "BY", "nosort"), ("MIGRATE", "h", "1", "", "0", "1")],
                         ids=lambda c: " ".join(c))
def test_app_a_cannot_run_server_wide_commands(two_apps, command):
    (prov, a, a_cred), _ = two_apps["redis"]
    assert refused(redis.Redis.from_url(prov.url(a, a_cred)), *command)


def test_a_function_the_app_plants_in_its_backup_never_runs_with_the_admins_rights(tmp_path):
    """An expression index calls a function (declared immutable, calling a volatile one) that makes the app's
    login a superuser when it runs as one. Restoring the dump as the admin ran it, so verifying the backup
    would have given the app the server; every restore runs as the service's owner instead."""
    from services.backups import Backups
    with ensured() as make:
        prov, service, cred = make("postgresql", unique_app("evil"))
        login = f"corral_{service.app}_db_u1"
        conn = psycopg2.connect(prov.url(service, cred))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"""
                CREATE FUNCTION escalate() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                    EXECUTE 'ALTER ROLE "{login}" SUPERUSER';
                  END IF;
                END $$;
                CREATE FUNCTION lookup(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
                BEGIN PERFORM public.escalate(); RETURN i; END $$;
                CREATE TABLE t (x int); INSERT INTO t VALUES (1);
                CREATE INDEX t_lookup ON t (lookup(x));""")
        conn.close()
        backups = Backups(str(tmp_path))
        b = backups.create(prov, service)
        backups.restore(prov, b, service)
        with psycopg2.connect(prov.url(service, cred)) as conn, conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = session_user")
            assert cur.fetchone() == (False,), "the app's login became a superuser"
        assert b.verified, b.manifest["verified"]
