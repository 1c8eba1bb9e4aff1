"""The pure core of app services: names, the provisioning plan, the env, backup decisions."""
import pytest

from services.backups import MANIFEST_FORMAT, backup_id, manifest_refusal, space_refusal
from services.names import (SCRATCH_LOCK_CLASS, env_name, pg_database, pg_login, pg_scratch, pg_scratch_lock,
                            redis_login, redis_prefix, redis_scratch, without_password)
from services.plan import (DELETE, FAILED, RETAINED, Known, ServicePlan, Wanted, missing_server, plan,
                           service_conditions, service_env)
from services.postgresql import compare_tables
from services.redis import acl_rules, digest

BOTH = {"postgresql", "redis"}


def w(app="hello", name="db", kind="postgresql", **kw):
    return Wanted(app, name, kind, **kw)


def k(app="hello", name="db", kind="postgresql", **kw):
    return Known(app, name, kind, **kw)


LIVE = {"hello"}


@pytest.mark.parametrize("wanted, known, live, rolled, expected", [
    ([w()], [], LIVE, (), ServicePlan(ensure=(w(),))),
    ([w()], [k()], LIVE, (), ServicePlan()),
    ([w()], [k(state=FAILED)], LIVE, (), ServicePlan(ensure=(w(),))),
    ([w()], [k(state=RETAINED)], LIVE, (), ServicePlan(ensure=(w(),))),
    ([w()], [k(present=False)], LIVE, (), ServicePlan(ensure=(w(),))),
    ([w()], [k(rotate=True)], LIVE, (), ServicePlan(rotate=(k(rotate=True),))),
    ([w()], [k(old_generations=(1,))], LIVE, (), ServicePlan()),
    ([w()], [k(old_generations=(1,))], LIVE, {("hello", "db")}, ServicePlan(retire=(k(old_generations=(1,)),))),
    ([w(on_delete=DELETE)], [k()], LIVE, (), ServicePlan(record=(w(on_delete=DELETE),))),
    ([], [k()], set(), (), ServicePlan(retain=(k(),))),
    ([], [k(state=RETAINED)], set(), (), ServicePlan()),
    ([], [k(on_delete=DELETE)], set(), (), ServicePlan(drop=(k(on_delete=DELETE),))),
    ([], [k(on_delete=DELETE, state=RETAINED)], set(), (), ServicePlan(drop=(k(on_delete=DELETE, state=RETAINED),))),
    ([], [k(on_delete=DELETE)], LIVE, (), ServicePlan(retain=(k(on_delete=DELETE),))),
    ([w(kind="redis", name="cache")], [], LIVE, (),
     ServicePlan(refused=(("hello", "cache", "app hello asks for a redis service (cache), but this cluster has "
                                             "no redis server (setting services.redis)"),))),
    ([w(kind="redis")], [k()], LIVE, (),
     ServicePlan(refused=(("hello", "db", "service hello/db is a postgresql service and cannot become redis: "
                                          "delete the app or give it another name"),))),
], ids=["new", "ready", "failed-again", "retained-comes-back", "gone-from-its-server", "rotate",
        "old-login-waits-for-the-roll", "old-login-retired-once-rolled", "on-delete-changed", "deleted-retain",
        "deleted-retained-already", "deleted-drop", "retained-then-deleted-with-delete", "taken-out-of-spec-is-kept",
        "no-server", "type-change"])
def test_plan(wanted, known, live, rolled, expected):
    servers = {"postgresql"} if any(x.type == "redis" and x.name == "cache" for x in wanted) else BOTH
    assert plan(wanted, known, servers, live, frozenset(rolled)) == expected


def test_plan_orders_by_app():
    wanted = [w(app="b"), w(app="a"), w(app="c", kind="redis", name="cache")]
    assert [x.app for x in plan(wanted, [], BOTH, {"a", "b", "c"}).ensure] == ["a", "b", "c"]


def test_missing_server_names_the_first_missing_type():
    assert missing_server("hello", {"db": {"type": "postgresql"}}, {"postgresql"}) is None
    assert missing_server("hello", {}, set()) is None
    assert "no postgresql server" in missing_server("hello", {"db": {"type": "postgresql"}}, set())


@pytest.mark.parametrize("urls, expected", [
    ({}, {}),
    ({"db": ("postgresql", "pg://a")}, {"DB_URL": "pg://a", "DATABASE_URL": "pg://a"}),
    ({"db": ("postgresql", "pg://a"), "archive": ("postgresql", "pg://b"), "page-cache": ("redis", "r://c")},
     {"DB_URL": "pg://a", "ARCHIVE_URL": "pg://b", "DATABASE_URL": "pg://b", "PAGE_CACHE_URL": "r://c",
      "REDIS_URL": "r://c", "REDIS_KEY_PREFIX": "hello:"}),
], ids=["none", "one-db", "first-by-name-gets-the-well-known-names"])
def test_service_env(urls, expected):
    assert service_env("hello", urls) == expected


def test_names_are_distinct_and_fit_postgresql():
    long_app, long_svc = "a" * 63, "b" * 63
    assert len(pg_database(long_app, long_svc)) == 63
    assert pg_database(long_app, long_svc) != pg_database(long_app, "b" * 62)
    assert len(pg_login(long_app, long_svc, 7)) <= 63
    assert pg_database("a-b", "c") != pg_database("a", "b-c")
    assert pg_login("hello", "db", 1) == "corral_hello_db_u1"
    assert redis_login("hello", "cache", 2) == "corral.hello.cache.2"
    assert env_name("page-cache") == "PAGE_CACHE_URL"
    assert "__" in pg_scratch() and "__" not in pg_database("x", "y")
    assert not redis_scratch().startswith(redis_prefix("corral"))


@pytest.mark.parametrize("bad", ["Hello", "a_b", "a:b", "a*", "", "-a", "x" * 64, "a'b"])
def test_names_refuse_what_is_not_a_dns_label(bad):
    with pytest.raises(ValueError, match="not a DNS label"):
        pg_database(bad, "db")
    with pytest.raises(ValueError, match="not a DNS label"):
        redis_prefix(bad)


def test_without_password():
    assert without_password("postgresql://admin:s3cret@db1:5432/postgres") == "postgresql://admin@db1:5432/postgres"
    assert without_password("redis://:s3cret@r1:6379") == "redis://r1:6379"
    assert without_password("redis://r1:6379") == "redis://r1:6379"


MB = 1_000_000


@pytest.mark.parametrize("free, last, size, margin, refused", [
    (200 * MB, 40 * MB, None, 64 * MB, False),
    (90 * MB, 40 * MB, None, 64 * MB, True),      # the docstring's example: 104 MB needed
    (90 * MB, None, 10 * MB, 64 * MB, False),     # no backup yet: the data's size stands in
    (90 * MB, None, 30 * MB, 64 * MB, True),
    (0, None, None, 0, False),
], ids=["room", "last-backup-too-big", "first-fits", "first-too-big", "empty-no-margin"])
def test_space_refusal(free, last, size, margin, refused):
    got = space_refusal("/backups", free, last, size, margin)
    assert (got is not None) == refused
    if refused:
        assert got.startswith("not enough free space in /backups for a backup:")


def test_backup_id_is_by_time_and_never_taken():
    t = 1796392800.0  # 2026-12-04T14:00:00Z
    assert backup_id("hello", "db", t) == "hello-db-20261204T140000Z"
    assert backup_id("hello", "db", t, {"hello-db-20261204T140000Z"}) == "hello-db-20261204T140000Z-2"


GOOD = {"format": MANIFEST_FORMAT, "id": "b1", "size": 10, "sha256": "ab" * 32, "verified": {"ok": True}}


@pytest.mark.parametrize("manifest, size, sha, said", [
    (GOOD, 10, "ab" * 32, None),
    (GOOD, 11, "ab" * 32, "11 bytes, the manifest says 10"),
    (GOOD, 10, "cd" * 32, "sha256 cdcdcdcdcdcd..., the manifest says abababababab..."),
    ({**GOOD, "verified": {"ok": False, "reason": "2 rows were dumped, 1 restored"}}, 10, "ab" * 32,
     "failed its verification (2 rows were dumped, 1 restored)"),
    ({**GOOD, "format": 99}, 10, "ab" * 32, "not of a format"),
], ids=["matches", "size", "digest", "unverified", "format"])
def test_manifest_refusal(manifest, size, sha, said):
    got = manifest_refusal("/b/x.dump", manifest, size, sha)
    assert got is None if said is None else said in got


@pytest.mark.parametrize("got, ok, said", [
    ({"public.t": [2, "9"]}, True, "1 tables, 2 rows, counts and checksums agree"),
    ({"public.t": [1, "9"]}, False, "table public.t: 2 rows were dumped, 1 restored"),
    ({"public.t": [2, "8"]}, False, "table public.t: the content checksum"),
    ({}, False, "table public.t is in the backup's facts but was not restored"),
    ({"public.t": [2, "9"], "public.u": [0, "0"]}, False, "table public.u was restored but is not"),
], ids=["agree", "rows", "checksum", "missing", "extra"])
def test_compare_tables(got, ok, said):
    verdict, reason = compare_tables({"public.t": [2, "9"]}, got)
    assert verdict is ok and said in reason


def test_redis_rules_confine_keys_and_channels_and_deny_the_dangerous():
    rules = acl_rules("hello:", "pw")
    assert rules[:6] == ("reset", "on", ">pw", "~hello:*", "resetchannels", "&hello:*")
    for denied in ("-@dangerous", "-select", "-scan", "-pubsub"):
        assert denied in rules


def test_redis_digest_is_order_free_and_sees_every_byte():
    a = [(b"k1", b"v1"), (b"k2", b"v2")]
    assert digest(a) == digest(list(reversed(a)))
    assert digest(a)[0] == 2
    assert digest(a) != digest([(b"k1", b"v1"), (b"k2", b"v3")])


SERVICES = {"db": {"type": "postgresql"}, "cache": {"type": "redis"}}


@pytest.mark.parametrize("states, backups, expected", [
    ({}, {}, [("ServicesReady", "False", "Provisioning", "waiting for cache, db")]),
    ({"db": ("ready", ""), "cache": ("failed", "Redis refused ACL")}, {},
     [("ServicesReady", "False", "Failed", "service cache: Redis refused ACL")]),
    ({"db": ("ready", ""), "cache": ("ready", "")}, {}, [("ServicesReady", "True", "Ready", "cache, db ready")]),
    ({"db": ("ready", ""), "cache": ("ready", "")}, {"db": ("b1", True, "agree")},
     [("ServicesReady", "True", "Ready", "cache, db ready"),
      ("BackupVerified", "True", "Verified", "latest backups restored and verified: b1")]),
    ({"db": ("ready", ""), "cache": ("ready", "")}, {"db": ("b1", False, "table t: 2 rows were dumped, 1 restored"),
                                                     "cache": ("c1", True, "agree")},
     [("ServicesReady", "True", "Ready", "cache, db ready"),
      ("BackupVerified", "False", "VerificationFailed",
       "the latest backup of db, b1, did not restore as dumped: table t: 2 rows were dumped, 1 restored")]),
], ids=["provisioning", "failed", "ready", "verified", "verification-failed"])
def test_service_conditions(states, backups, expected):
    got = service_conditions(SERVICES, states, backups)
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in got] == expected


def test_a_scratch_lock_is_named_only_for_a_scratch_database():
    name = pg_scratch("00ff00ff00ff")
    assert pg_scratch_lock(name) == (SCRATCH_LOCK_CLASS, 0x00ff00ff00ff % 2 ** 31)
    for other in ("corral_shop_db", "corral__scratch_", "corral__scratch_zz", "postgres"):
        assert pg_scratch_lock(other) is None, other
