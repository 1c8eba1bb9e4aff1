"""The services example: counts visits per page in PostgreSQL and caches the page in Redis.

corral gives it DATABASE_URL, REDIS_URL and REDIS_KEY_PREFIX (the only keys its
Redis user may touch). ``GET /PAGE`` counts one visit of PAGE and answers the
count; ``GET /top`` answers the most visited pages, from Redis for 2 s, then
from PostgreSQL again; ``GET /healthz`` checks both.
"""
import json
import os
import threading

import psycopg2
import redis

PREFIX = os.environ.get("REDIS_KEY_PREFIX", "")
_local = threading.local()
cache = redis.Redis.from_url(os.environ["REDIS_URL"]) if os.environ.get("REDIS_URL") else None


def db():
    """This thread's connection (waitress serves from a few threads)."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg2.connect(os.environ["DATABASE_URL"])
        conn.autocommit = True
    return conn


def migrate():
    """The table, once: two instances starting together take turns (an advisory lock)."""
    with db().cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(7)")
        try:
            cur.execute("CREATE TABLE IF NOT EXISTS visits (page text PRIMARY KEY, count bigint NOT NULL)")
        finally:
            cur.execute("SELECT pg_advisory_unlock(7)")


def visit(page):
    with db().cursor() as cur:
        cur.execute("INSERT INTO visits VALUES (%s, 1) ON CONFLICT (page) DO UPDATE SET count = visits.count + 1 "
                    "RETURNING count", (page,))
        return cur.fetchone()[0]


def top():
    cached = cache.get(PREFIX + "top") if cache else None
    if cached:
        return json.loads(cached), "redis"
    with db().cursor() as cur:
        cur.execute("SELECT page, count FROM visits ORDER BY count DESC, page LIMIT 10")
        rows = cur.fetchall()
    if cache:
        cache.set(PREFIX + "top", json.dumps(rows), ex=2)
    return rows, "postgresql"


def answer(start_response, status, value):
    body = (json.dumps(value) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    try:
        if path == "/healthz":
            with db().cursor() as cur:
                cur.execute("SELECT 1")
            if cache:
                cache.ping()
            return answer(start_response, "200 OK", "ok")
        if path == "/top":
            rows, source = top()
            return answer(start_response, "200 OK", {"top": rows, "from": source})
        count = visit(path)
        if cache:
            cache.incr(PREFIX + "requests")
        return answer(start_response, "200 OK", {"page": path, "visits": count,
                                                 "instance": os.environ.get("CORRAL_INSTANCE"),
                                                 "greeting": os.environ.get("GREETING", "hello")})
    except (psycopg2.Error, redis.RedisError) as e:
        _local.conn = None
        return answer(start_response, "503 Service Unavailable", {"error": str(e).strip()})


migrate()
