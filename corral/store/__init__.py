"""The cluster's state, behind one interface (:class:`Store`) with two backends.

``open_store(dsn)`` picks the backend from the DSN:

- ``sqlite:///path/corral.db`` -- the embedded default (WAL mode);
- ``postgresql://user@host:port/db`` -- through psycopg2, for several machines.

The schema is created and migrated by :meth:`Store.migrate`, which
``open_store`` calls.
"""
from corral.store.base import (  # noqa: F401
    ApiTokenRecord, AppRecord, ApplyResult, BuilderRecord, BuildRecord, BuildState, Conflict, DesiredInstance, Event,
    Fenced, GitSourceRecord, Lease, NewerSchema, NodeKeyRecord, NodeRecord, RevisionRecord, RunRecord,
    ServiceBackupRecord, ServiceRecord,
    Store, StoreError, jsonable, owner_source,
)


def open_store(dsn, migrate=True):
    """Open (and by default migrate) the store named by ``dsn``.

    Raises ValueError with one sentence for a DSN of unknown form.
    """
    if dsn.startswith("sqlite://"):
        from corral.store.sqlite import SQLiteStore
        store = SQLiteStore(dsn[len("sqlite://"):])
    elif dsn.startswith(("postgresql://", "postgres://")):
        from corral.store.postgres import PostgresStore
        store = PostgresStore(dsn)
    else:
        raise ValueError(f"store DSN {dsn!r} is neither sqlite:///PATH nor postgresql://USER@HOST:PORT/DB")
    if migrate:
        store.migrate()
    return store
