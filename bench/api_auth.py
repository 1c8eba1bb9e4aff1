"""What checking a named token in the store costs an API request.

Starts one reconciler (tests.support.reconciler_process) on a SQLite store and
one on a PostgreSQL schema (the test run's server), and on each times ``-n``
requests (default 2,000) of ``GET /v1/whoami`` and of ``GET /v1/apps`` over
one keep-alive connection, first with the cluster-key bootstrap token (compared
in memory, and one store read per request asking whether a named token exists
yet), then with a named token (one indexed SELECT by its sha256 per request,
its last use written at most once a minute). Prints requests per second and
the median latency of each, and the machine's load average before and after.

Run: ``.venv/bin/python bench/api_auth.py [-n 2000]``

Figures only: nothing here is asserted in a test.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from corral.auth import api_token  # noqa: E402
from tests.pg import postgres_dsn  # noqa: E402
from tests.support import reconciler_process, scratch_schema  # noqa: E402


def timed(port, token, path, n):
    """``(requests per second, median ms)`` of ``n`` GETs of ``path`` with ``token`` on one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    took = []
    began = time.perf_counter()
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"GET {path} answered {resp.status}")
        took.append(time.perf_counter() - start)
    conn.close()
    return n / (time.perf_counter() - began), statistics.median(took) * 1000


def named(port, key):
    """A named admin token made through the API with the bootstrap token (the bootstrap token is then off)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/tokens", body=json.dumps({"name": "bench", "role": "admin"}),
                 headers={"Authorization": f"Bearer {api_token(key)}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return body["token"]


def measure(label, folder, store, n):
    with reconciler_process(folder, name="r-bench", store=store) as (port, key):
        rows = []
        for path in ("/v1/whoami", "/v1/apps"):
            timed(port, api_token(key), path, 50)
            rows.append((f"{label} cluster-key token", path, *timed(port, api_token(key), path, n)))
        token = named(port, key)
        for path in ("/v1/whoami", "/v1/apps"):
            timed(port, token, path, 50)
            rows.append((f"{label} named token", path, *timed(port, token, path, n)))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=2000, help="requests per figure (default 2000)")
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        os.mkdir(os.path.join(folder, "sqlite"))
        rows += measure("SQLite", os.path.join(folder, "sqlite"), None, args.n)
        os.mkdir(os.path.join(folder, "pg"))
        with scratch_schema(postgres_dsn()) as dsn:
            rows += measure("PostgreSQL", os.path.join(folder, "pg"), dsn, args.n)
    for label, path, rate, median in rows:
        print(f"{label:32} GET {path:11} {rate:7.0f} requests/s   median {median:.2f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
