"""What the SQLite and PostgreSQL stores share: every query (the schema is in schema.py).

:class:`SQLStore` implements the whole :class:`~corral.store.base.Store`
interface once, in parts by entity (apps, GitOps sources, builds, nodes, events,
runs, services: ``*rows.py`` beside this file) over one transaction helper and
one fence. A backend says only what differs between the two databases:

- how a transaction is opened, run and retried (:meth:`SQLStore._run`);
- the placeholder style (``?`` or ``%s``; queries here are written with ``?``);
- column types (``{serial}``, ``{blob}``, ``{real}``, ``{bool}`` in the DDL);
- row locking: ``FOR UPDATE`` / ``FOR SHARE`` / ``SKIP LOCKED`` suffixes, which
  SQLite does without because its writers take the database lock up front
  (``BEGIN IMMEDIATE``);
- the store's clock (:meth:`SQLStore._now`), used for every timestamp so that
  leases and build heartbeats compare times from one clock;
- the lock that makes :meth:`migrate` safe for two daemons at once.

Upserts are spelled ``INSERT ... ON CONFLICT (...) DO ...`` and new ids come
back through ``RETURNING``: both databases understand the same words.

JSON columns hold canonical JSON text (sorted keys, no spaces) in both
backends, so "unchanged" in :meth:`apply_apps` is a comparison of text.

``apps_version()`` reads a one-row counter (``meta.apps_version``) that every
write of an app row bumps in the same transaction. ``resource_version`` is
per app and grows by one per write of that app.
"""
import abc
from typing import Optional

from corral.store.approws import AppRows
from corral.store.base import Fenced, Lease, NewerSchema, Store
from corral.store.layerrows import LayerRows
from corral.store.buildrows import BuildRows
from corral.store.cursor import Cursor
from corral.store.eventrows import EventRows
from corral.store.gitsourcerows import GitSourceRows
from corral.store.nodekeyrows import NodeKeyRows
from corral.store.noderows import NodeRows
from corral.store.runs import RunQueries
from corral.store.schema import MIGRATIONS, SCHEMA_VERSION
from corral.store.servicerows import ServiceRows
from corral.store.tokenrows import TokenRows

LEADER = "leader"


class SQLStore(AppRows, GitSourceRows, BuildRows, NodeRows, EventRows, RunQueries, ServiceRows, TokenRows, LayerRows,
               NodeKeyRows, Store):
    """The Store interface in SQL that both SQLite and PostgreSQL accept.

    Subclasses set the class attributes below and implement :meth:`_run`,
    :meth:`_now` and :meth:`_lock_for_migration`.
    """

    #: DDL type names, substituted into MIGRATIONS.
    types = {"serial": "INTEGER PRIMARY KEY", "blob": "BLOB", "real": "REAL", "bool": "INTEGER"}
    #: Appended to a SELECT that reads a row it is about to change.
    for_update = ""
    #: Appended to a SELECT that must see a row stay as it is until commit.
    for_share = ""
    #: Appended to the job-queue SELECT so concurrent claimers pass each other.
    skip_locked = ""
    #: First statement of a transaction that must read one snapshot across statements
    #: (PostgreSQL's READ COMMITTED gives each statement its own); SQLite needs none.
    snapshot_statement = ""
    #: A query with one row when the table named by its parameter exists (SQLite's form here).
    table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    # --- what a backend supplies -----------------------------------------
    @abc.abstractmethod
    def _run(self, work, write: bool, commit: bool = True):
        """Run ``work(cursor)`` in one transaction and return what it returns.

        ``write`` says the transaction will write (SQLite takes the write lock
        at BEGIN); ``commit`` False rolls back even on success (dry runs).
        Backend failures become StoreError; exceptions from ``work`` roll back
        and propagate.
        """

    @abc.abstractmethod
    def _now(self, cur: Cursor) -> float:
        """The store's clock, in seconds since the epoch."""

    @abc.abstractmethod
    def _lock_for_migration(self, cur: Cursor) -> None:
        """Make concurrent migrate() calls take turns, until the transaction ends."""

    # --- whole-store transactions (backup and restore) ------------------
    def read_snapshot(self, work):
        """Run ``work(cursor)`` in one read-only transaction that sees a single consistent snapshot."""
        def snapshot(cur):
            if self.snapshot_statement:
                cur.execute(self.snapshot_statement)
            return work(cur)
        return self._run(snapshot, write=False, commit=False)

    def write_transaction(self, work):
        """Run ``work(cursor)`` in one write transaction (``?`` placeholders) and return what it returns."""
        return self._run(work, write=True)

    # --- lifecycle -----------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the schema to SCHEMA_VERSION, all in one transaction.

        A schema newer than SCHEMA_VERSION is left as it is: this corral reads and writes it (a
        migration within one minor release only adds) but :meth:`acquire_lease` refuses it the
        lead. Upgrading a schema that was in use frees the leader lease and raises its epoch, so
        that an older leader's next write is fenced and a reconciler of this version takes over.
        """
        def work(cur):
            self._lock_for_migration(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self._schema_version(cur)
            if current >= SCHEMA_VERSION:
                return
            for steps in MIGRATIONS[current:]:
                for statement in steps:
                    cur.execute(statement.format(**self.types))
            if current == 0:
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                cur.execute("UPDATE leases SET holder = NULL, expires_at = 0, epoch = epoch + 1 WHERE name = ?",
                            (LEADER,))
        self._run(work, write=True)

    def schema_version(self) -> int:
        """The version of the schema the store holds (0 before the first migration)."""
        def work(cur):
            cur.execute(self.table_exists_sql, ("schema_version",))
            return self._schema_version(cur) if cur.fetchone() else 0
        return self._run(work, write=False)

    @staticmethod
    def _schema_version(cur: Cursor) -> int:
        cur.execute("SELECT version FROM schema_version")
        row = cur.fetchone()
        return int(row[0]) if row else 0

    # --- fencing -------------------------------------------------------
    def _check_epoch(self, cur: Cursor, epoch: int) -> None:
        """Raise Fenced unless the leader lease has exactly ``epoch``.

        The lease row stays locked (FOR SHARE) until commit, so a takeover,
        which updates that row, waits for this write to finish or goes first.
        """
        cur.execute("SELECT epoch FROM leases WHERE name = ?" + self.for_share, (LEADER,))
        row = cur.fetchone()
        current = int(row[0]) if row else None
        if current != epoch:
            raise Fenced(f"write refused: epoch {epoch} is stale, the {LEADER!r} lease is at "
                         f"epoch {current}")

    # --- leases --------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> Optional[Lease]:
        """Take or renew the lease; see Store.acquire_lease."""
        def work(cur):
            found = self._schema_version(cur)
            if found > SCHEMA_VERSION:
                raise NewerSchema(found, SCHEMA_VERSION)
            cur.execute("INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?, NULL, 0, 0) "
                        "ON CONFLICT (name) DO NOTHING", (name,))
            cur.execute("SELECT holder, epoch, expires_at FROM leases WHERE name = ?" + self.for_update,
                        (name,))
            current, epoch, expires_at = cur.fetchone()
            now = self._now(cur)
            if current is not None and current != holder and expires_at > now:
                return None
            epoch = int(epoch) if current == holder else int(epoch) + 1
            cur.execute("UPDATE leases SET holder = ?, epoch = ?, expires_at = ? WHERE name = ?",
                        (holder, epoch, now + ttl, name))
            return Lease(name=name, holder=holder, epoch=epoch, expires_at=now + ttl)
        return self._run(work, write=True)

    def release_lease(self, name: str, holder: str) -> None:
        """Free the lease at once if ``holder`` holds it; the epoch stays."""
        def work(cur):
            cur.execute("UPDATE leases SET holder = NULL, expires_at = 0 WHERE name = ? AND holder = ?",
                        (name, holder))
        self._run(work, write=True)

    def get_lease(self, name: str) -> Optional[Lease]:
        """The lease row as it stands, or None."""
        def work(cur):
            cur.execute("SELECT name, holder, epoch, expires_at FROM leases WHERE name = ?", (name,))
            row = cur.fetchone()
            return Lease(name=row[0], holder=row[1], epoch=int(row[2]), expires_at=row[3]) if row else None
        return self._run(work, write=False)
