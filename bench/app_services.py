"""Benchmark: app services on this machine's PostgreSQL and Redis.

Measures, with the real servers and the real pg_dump/pg_restore:

- provisioning an app with both services (a PostgreSQL database, owner and login
  role; a Redis ACL user): the provisioners' ``ensure``, first time and again
  (the idempotent pass the leader makes after a server lost its users);
- a backup of a PostgreSQL database of about ``--mb`` MB (pg_dump -Fc in the
  snapshot its facts are read in) and its verification (restore into a scratch
  database, per-table counts and checksums), and the file's size;
- a restore of that backup into the live database (pg_restore --clean, one
  transaction);
- a backup and verification of ``--keys`` Redis keys.

    .venv/bin/python bench/app_services.py [--mb 100] [--keys 100000] [--repeat 3]

Figures go to stdout as a table; nothing is asserted.
"""
import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg2  # noqa: E402
import redis  # noqa: E402

from services.backups import Backups  # noqa: E402
from services.base import Credential, Service  # noqa: E402
from services.postgresql import PostgresProvisioner  # noqa: E402
from services.redis import RedisProvisioner  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"


def timed(fn):
    start = time.monotonic()
    out = fn()
    return time.monotonic() - start, out


def fill_postgres(url, mb):
    """Tables of about ``mb`` MB on disk: visits (narrow rows, an index) and pages (text of random digests, which
    compresses about as well as real content does)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        rows = mb * 6700   # about 1 MB on disk per 6,700 rows (half of each table)
        cur.execute("CREATE TABLE visits (id bigserial PRIMARY KEY, page text, at timestamptz DEFAULT now())")
        cur.execute("INSERT INTO visits (page) SELECT 'page-' || (g %% 5000) FROM generate_series(1, %s) g",
                    (rows // 2,))
        cur.execute("CREATE TABLE pages (id int PRIMARY KEY, body text)")
        cur.execute("INSERT INTO pages SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(g::text) FROM generate_series(1, %s) g", (rows // 2,))


def fill_redis(url, app, keys):
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        if i % 4 == 0:
            pipe.hset(f"{app}:user:{i}", mapping={"name": f"user {i}", "visits": i})
        else:
            pipe.set(f"{app}:page:{i}", f"cached page {i} " * 8, ex=3600 if i % 3 else None)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def bench(args):
    pg, rd = PostgresProvisioner(PG, timeout=3600), RedisProvisioner(REDIS)
    rows = []
    for i in range(args.repeat):
        app = f"bench-{secrets.token_hex(3)}"
        db, cache = Service(app, "db", "postgresql"), Service(app, "cache", "redis")
        cred = Credential(1, secrets.token_urlsafe(12))
        try:
            first = timed(lambda: (pg.ensure(db, cred), rd.ensure(cache, cred)))[0]
            again = timed(lambda: (pg.ensure(db, cred), rd.ensure(cache, cred)))[0]
            fill_postgres(pg.url(db, cred), args.mb)
            fill_redis(REDIS, app, args.keys)
            with tempfile.TemporaryDirectory() as folder:
                backups = Backups(folder)
                b = backups.create(pg, db)
                assert b.verified, b.manifest["verified"]
                restore = timed(lambda: backups.restore(pg, b, db))[0]
                r = backups.create(rd, cache)
                assert r.verified, r.manifest["verified"]
            rows.append({"provision": first, "again": again, "db_size": pg.size(db),
                         "pg_backup": b.manifest["seconds"]["backup"], "pg_verify": b.manifest["seconds"]["verify"],
                         "pg_file": b.manifest["size"], "pg_restore": restore,
                         "redis_backup": r.manifest["seconds"]["backup"], "redis_verify": r.manifest["seconds"]["verify"],
                         "redis_file": r.manifest["size"]})
        finally:
            pg.drop(db)
            rd.drop(cache)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in rows[-1].items()), flush=True)
    return rows


def report(rows, args):
    def med(key):
        return statistics.median(r[key] for r in rows)
    print(f"\nmedian of {len(rows)} runs ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}):")
    print("| what | figure |")
    print("| --- | --- |")
    print(f"| provisioning an app with both services (first / again) | {med('provision'):.2f} s / {med('again'):.2f} s |")
    print(f"| PostgreSQL database on disk | {med('db_size') / 1e6:.0f} MB |")
    print(f"| its backup (pg_dump -Fc) / its verification (restore + counts + checksums) | "
          f"{med('pg_backup'):.1f} s / {med('pg_verify'):.1f} s |")
    print(f"| its backup file | {med('pg_file') / 1e6:.1f} MB |")
    print(f"| restore into the live database | {med('pg_restore'):.1f} s |")
    print(f"| Redis, {args.keys} keys: backup / verification / file | {med('redis_backup'):.1f} s / "
          f"{med('redis_verify'):.1f} s / {med('redis_file') / 1e6:.1f} MB |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=100, help="size of the PostgreSQL database, about (default 100)")
    p.add_argument("--keys", type=int, default=100000, help="Redis keys (default 100000)")
    p.add_argument("--repeat", type=int, default=3, help="runs (default 3)")
    args = p.parse_args()
    report(bench(args), args)


if __name__ == "__main__":
    main()
