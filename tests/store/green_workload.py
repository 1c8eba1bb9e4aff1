"""A daemon-like process for the store suite: green threads applying and claiming at once.

Run as ``python green_workload.py sqlite|postgresql DSN_OR_PATH TAG``. Patches
eventlet first, as every corral daemon does, then prints one JSON line:
``{"changed": N, "claimed": [keys...], "errors": [...]}``.
"""
import corral.green

corral.green.patch()

import json  # noqa: E402
import sys  # noqa: E402

import eventlet  # noqa: E402
import psycopg2.extensions  # noqa: E402

from corral.store.postgres import PostgresStore  # noqa: E402
from corral.store.sqlite import SQLiteStore  # noqa: E402

THREADS = 10
APPLIES = 5


def main(backend: str, where: str, tag: str) -> None:
    if backend == "postgresql":
        assert psycopg2.extensions.get_wait_callback() is not None, "psycopg2 is not green"
        store = PostgresStore(where, pool_size=3)
    else:
        store = SQLiteStore(where)
    changed, claimed, errors = [], [], []

    def applier(n):
        for i in range(APPLIES):
            docs = [{"name": f"{tag}-{n}", "labels": {}, "spec": {"i": i}, "source_digest": "d"}]
            if i % 2:
                docs.append({"name": "shared", "labels": {}, "spec": {"by": tag}, "source_digest": "d"})
            results = store.apply_apps(docs, actor=tag)
            changed.append(any(r.action != "unchanged" for r in results))

    def claimer(n):
        while (build := store.claim_build(f"{tag}-{n}", stale_after=3600)) is not None:
            claimed.append(build.key)
            store.finish_build(build.id, f"{tag}-{n}", state="succeeded", image="sha256:x")

    def guarded(fn, n):
        try:
            fn(n)
        except Exception as exc:  # reported to the test
            errors.append(f"{type(exc).__name__}: {exc}")
    pool = eventlet.GreenPool()
    for n in range(THREADS):
        pool.spawn(guarded, applier, n)
        pool.spawn(guarded, claimer, n)
    pool.waitall()
    store.close()
    print(json.dumps({"changed": sum(changed), "claimed": claimed, "errors": errors}))


if __name__ == "__main__":
    main(*sys.argv[1:])
