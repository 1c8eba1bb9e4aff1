"""What the SQLite and PostgreSQL stores share: every query (the schema is in schema.py).

:class:`SQLStore` implements the whole :class:`~corral.store.base.Store`
interface once. A backend says only what differs between the two databases:

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
import json
from typing import Optional

from corral.store.base import (
    AppRecord, ApplyResult, BuildRecord, BuildState, Conflict, Fenced, GitSourceRecord, Lease, NewerSchema, RevisionRecord,
    Store, owner_source,
)
from corral.store.runs import RunQueries
from corral.store.schema import (
    APP_COLUMNS, BUILD_COLUMNS, DESIRED_COLUMNS, EVENT_COLUMNS, GITSOURCE_COLUMNS, MIGRATIONS, NODE_COLUMNS,
    SCHEMA_VERSION, app_from_row, build_from_row, canonical_json, desired_from_row, event_from_row,
    gitsource_from_row, node_from_row,
)

from corral.store.nodekeys import NodeKeyRows
from corral.store.servicerows import ServiceRows

LEADER = "leader"

ROWS_A_STATEMENT = 100  # rows of one multi-row INSERT (8 columns: within SQLite's 999 variables)


class Cursor:
    """A DB-API cursor that takes ``?`` placeholders and counts the statements it ran.

    The count lets a backend tell "failed before anything was sent" (safe to
    retry on a fresh connection) from "failed midway" (not safe).
    """

    def __init__(self, raw, placeholder: str):
        self.raw = raw
        self.placeholder = placeholder
        self.executed = 0

    def execute(self, sql: str, params=()):
        """Run one statement; ``?`` in ``sql`` becomes the backend's placeholder."""
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        if params:
            self.raw.execute(sql, tuple(params))
        else:  # no parameters: psycopg2 then leaves a literal % alone
            self.raw.execute(sql)
        self.executed += 1
        return self

    def execute_rows(self, head: str, rows: list, tail: str = "") -> None:
        """Run ``head VALUES (?, ...), (?, ...) tail`` over ``rows`` (tuples of one length),
        :data:`ROWS_A_STATEMENT` rows a statement: 10,000 rows were 10,000 round trips
        to PostgreSQL, seconds of a loop pass."""
        for i in range(0, len(rows), ROWS_A_STATEMENT):
            chunk = rows[i:i + ROWS_A_STATEMENT]
            one = "(" + ", ".join("?" * len(chunk[0])) + ")"
            self.execute(f"{head} VALUES {', '.join([one] * len(chunk))} {tail}",
                         [v for row in chunk for v in row])

    def fetchone(self):
        return self.raw.fetchone()

    def fetchall(self):
        return self.raw.fetchall()

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount


class SQLStore(RunQueries, ServiceRows, NodeKeyRows, Store):
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

    # --- apps ----------------------------------------------------------
    def apply_apps(self, docs: list, actor: str, dry_run: bool = False, gitsources: tuple = (),
                   refuse=None) -> list:
        """Create or update apps and GitSources in one transaction; see Store.apply_apps."""
        def work(cur):
            # Serialise every apps writer on the counter row first, so two
            # applies of the same new name cannot both decide "created".
            cur.execute("SELECT apps_version FROM meta WHERE id = 1" + self.for_update)
            self._check_refusal(cur, refuse)
            now = self._now(cur)
            results, changed = [], False
            for doc in docs:
                result = self._apply_one(cur, doc, actor, now)
                results.append(result)
                changed = changed or result.action != "unchanged"
            if changed:
                self._bump_apps_version(cur)
            results.extend(self._apply_gitsource(cur, doc, actor, now) for doc in gitsources)
            return results
        return self._run(work, write=True, commit=not dry_run)

    def _apply_one(self, cur: Cursor, doc: dict, actor: str, now: float) -> ApplyResult:
        name = doc["name"]
        labels = canonical_json(doc.get("labels") or {})
        spec = canonical_json(doc["spec"])
        digest = doc["source_digest"]
        cur.execute("SELECT labels, spec, source_digest, generation, deleting, owner FROM apps WHERE name = ?",
                    (name,))
        row = cur.fetchone()
        if row is None:
            cur.execute(
                f"INSERT INTO apps ({APP_COLUMNS}) VALUES (?, ?, ?, ?, 1, 1, ?, ?, ?, ?, ?, ?)",
                (name, labels, spec, digest, False, "{}", doc.get("owner"), now, now, now))
            self._add_event(cur, now, "app", name, "Created", "app created (generation 1)", actor)
            return ApplyResult(name=name, action="created", generation=1)
        old_labels, old_spec, old_digest, generation, deleting, old_owner = row
        owner = doc["owner"] if "owner" in doc else old_owner  # a hand apply keeps the owner
        if (old_labels, old_spec, old_digest, bool(deleting)) == (labels, spec, digest, False):
            if owner_source(owner) != owner_source(old_owner):
                cur.execute("UPDATE apps SET owner = ?, resource_version = resource_version + 1, "
                            "updated_at = ? WHERE name = ?", (owner, now, name))
                self._add_event(cur, now, "app", name, "Adopted", f"app now owned by {owner_source(owner)}",
                                actor)
            return ApplyResult(name=name, action="unchanged", generation=int(generation))
        generation = int(generation) + 1
        cur.execute(
            "UPDATE apps SET labels = ?, spec = ?, source_digest = ?, owner = ?, deleting = ?, "
            "generation = ?, resource_version = resource_version + 1, updated_at = ?, applied_at = ? "
            "WHERE name = ?",
            (labels, spec, digest, owner, False, generation, now, now, name))
        how = "revived after delete" if deleting else "configured"
        self._add_event(cur, now, "app", name, "Configured", f"app {how} (generation {generation})",
                        actor)
        return ApplyResult(name=name, action="configured", generation=generation)

    def _apply_gitsource(self, cur: Cursor, doc: dict, actor: str, now: float) -> ApplyResult:
        name = doc["name"]
        labels = canonical_json(doc.get("labels") or {})
        spec = canonical_json(doc["spec"])
        cur.execute("SELECT labels, spec, generation FROM gitsources WHERE name = ?", (name,))
        row = cur.fetchone()
        if row is None:
            cur.execute(f"INSERT INTO gitsources ({GITSOURCE_COLUMNS}) VALUES (?, ?, ?, 1, ?, NULL, ?, ?)",
                        (name, labels, spec, "{}", now, now))
            self._add_event(cur, now, "gitsource", name, "Created", "source created (generation 1)", actor)
            return ApplyResult(name=name, action="created", generation=1, kind="GitSource")
        if (row[0], row[1]) == (labels, spec):
            return ApplyResult(name=name, action="unchanged", generation=int(row[2]), kind="GitSource")
        generation = int(row[2]) + 1
        cur.execute("UPDATE gitsources SET labels = ?, spec = ?, generation = ?, updated_at = ? WHERE name = ?",
                    (labels, spec, generation, now, name))
        self._add_event(cur, now, "gitsource", name, "Configured",
                        f"source configured (generation {generation})", actor)
        return ApplyResult(name=name, action="configured", generation=generation, kind="GitSource")

    def _mark_deleting(self, cur: Cursor, name: str, now: float, reason: str, message: str, actor: str) -> None:
        """Mark app ``name`` deleting (a write: resource_version grows) with an event saying why;
        the caller bumps the apps version once for its transaction."""
        cur.execute("UPDATE apps SET deleting = ?, resource_version = resource_version + 1, "
                    "updated_at = ? WHERE name = ?", (True, now, name))
        self._add_event(cur, now, "app", name, reason, message, actor)

    def _bump_apps_version(self, cur: Cursor) -> None:
        cur.execute("UPDATE meta SET apps_version = apps_version + 1 WHERE id = 1")

    def get_app(self, name: str) -> Optional[AppRecord]:
        """The app named ``name``, or None."""
        def work(cur):
            cur.execute(f"SELECT {APP_COLUMNS} FROM apps WHERE name = ?", (name,))
            row = cur.fetchone()
            return app_from_row(row) if row else None
        return self._run(work, write=False)

    def list_apps(self) -> list:
        """All apps, those being deleted included, sorted by name."""
        def work(cur):
            cur.execute(f"SELECT {APP_COLUMNS} FROM apps ORDER BY name")
            return [app_from_row(row) for row in cur.fetchall()]
        return self._run(work, write=False)

    def _check_refusal(self, cur: Cursor, refuse) -> None:
        """Raise Conflict with the sentence of ``refuse(every stored app)``, when it has one."""
        if refuse is None:
            return
        cur.execute(f"SELECT {APP_COLUMNS} FROM apps ORDER BY name")
        sentence = refuse([app_from_row(row) for row in cur.fetchall()])
        if sentence:
            raise Conflict(sentence)

    def mark_app_deleting(self, name: str, actor: str) -> bool:
        """Set ``deleting`` (a write: resource_version grows); False when there is no such app."""
        def work(cur):
            cur.execute("SELECT apps_version FROM meta WHERE id = 1" + self.for_update)
            cur.execute("SELECT deleting FROM apps WHERE name = ?", (name,))
            row = cur.fetchone()
            if row is None:
                return False
            if not row[0]:
                now = self._now(cur)
                self._mark_deleting(cur, name, now, "Deleting", "app marked for deletion", actor)
                self._bump_apps_version(cur)
            return True
        return self._run(work, write=True)

    def purge_app(self, name: str, epoch: int) -> None:
        """Remove the app row (fenced on ``epoch``); a missing app is not an error."""
        def work(cur):
            self._check_epoch(cur, epoch)
            cur.execute("DELETE FROM apps WHERE name = ?", (name,))
            if cur.rowcount:
                self._bump_apps_version(cur)
        self._run(work, write=True)

    def set_app_status(self, name: str, status: dict, epoch: int) -> None:
        """Replace the app's status (fenced on ``epoch``); bumps resource_version, not generation.

        Writing the status an app already has is no write at all. Raises
        Conflict when there is no such app.
        """
        text = canonical_json(status)

        def work(cur):
            self._check_epoch(cur, epoch)
            if self._set_status(cur, name, text) is None:
                raise Conflict(f"cannot set the status of app {name!r}: there is no such app")
        self._run(work, write=True)

    def set_app_statuses(self, statuses: dict, epoch: int) -> list:
        """Replace the status of every app in ``statuses`` (name -> status) in one fenced
        transaction; returns the names of apps that no longer exist (left alone)."""
        def work(cur):  # a few statements per hundred apps, not four per app (PostgreSQL round trips)
            self._check_epoch(cur, epoch)
            names = sorted(statuses)
            stored = {}
            for i in range(0, len(names), ROWS_A_STATEMENT):
                chunk = names[i:i + ROWS_A_STATEMENT]
                cur.execute(f"SELECT name, status FROM apps WHERE name IN ({', '.join('?' * len(chunk))})", chunk)
                stored.update(cur.fetchall())
            now, changed = self._now(cur), False
            for name in names:
                text = canonical_json(statuses[name])
                if name in stored and stored[name] != text:
                    cur.execute("UPDATE apps SET status = ?, resource_version = resource_version + 1, "
                                "updated_at = ? WHERE name = ?", (text, now, name))
                    changed = True
            if changed:
                self._bump_apps_version(cur)
            return [name for name in names if name not in stored]
        return self._run(work, write=True)

    def _set_status(self, cur: Cursor, name: str, text: str):
        """Write one app's status text; None when there is no such app, False when unchanged."""
        cur.execute("SELECT status FROM apps WHERE name = ?", (name,))
        row = cur.fetchone()
        if row is None:
            return None
        if row[0] == text:
            return False
        cur.execute("UPDATE apps SET status = ?, resource_version = resource_version + 1, "
                    "updated_at = ? WHERE name = ?", (text, self._now(cur), name))
        self._bump_apps_version(cur)
        return True

    def apps_version(self) -> int:
        """The apps change counter: grows with every write of any app row."""
        def work(cur):
            cur.execute("SELECT apps_version FROM meta WHERE id = 1")
            return int(cur.fetchone()[0])
        return self._run(work, write=False)

    # --- GitOps sources ---------------------------------------------------
    def get_gitsource(self, name: str) -> Optional[GitSourceRecord]:
        """The GitSource named ``name``, or None."""
        def work(cur):
            cur.execute(f"SELECT {GITSOURCE_COLUMNS} FROM gitsources WHERE name = ?", (name,))
            row = cur.fetchone()
            return gitsource_from_row(row) if row else None
        return self._run(work, write=False)

    def list_gitsources(self) -> list:
        """All GitSources, sorted by name."""
        def work(cur):
            cur.execute(f"SELECT {GITSOURCE_COLUMNS} FROM gitsources ORDER BY name")
            return [gitsource_from_row(row) for row in cur.fetchall()]
        return self._run(work, write=False)

    def request_gitsource_sync(self, name: str) -> Optional[float]:
        """Stamp a sync request with the store's time; None when there is no such source."""
        def work(cur):
            now = self._now(cur)
            cur.execute("UPDATE gitsources SET sync_requested_at = ? WHERE name = ?", (now, name))
            return now if cur.rowcount else None
        return self._run(work, write=True)

    def set_gitsource_status(self, name: str, status: dict, epoch: int) -> None:
        """Replace the source's status (fenced on ``epoch``)."""
        def work(cur):
            self._check_epoch(cur, epoch)
            cur.execute("UPDATE gitsources SET status = ? WHERE name = ?", (canonical_json(status), name))
        self._run(work, write=True)

    def delete_gitsource(self, name: str, cascade: bool, actor: str) -> Optional[list]:
        """Remove source ``name``, then delete or release the apps it owned; see Store.delete_gitsource."""
        mine = f"gitsource/{name}"

        def work(cur):
            # The apps lock first, as sync_gitsource takes it: a sync under way ends before this reads its apps.
            cur.execute("SELECT apps_version FROM meta WHERE id = 1" + self.for_update)
            cur.execute("DELETE FROM gitsources WHERE name = ?", (name,))
            if not cur.rowcount:
                return None
            now = self._now(cur)
            self._add_event(cur, now, "gitsource", name, "Deleted",
                            "source deleted; its apps " + ("are deleted" if cascade else "are kept, managed by hand"),
                            actor)
            cur.execute("SELECT name, owner FROM apps WHERE deleting = ? ORDER BY name", (False,))
            owned = [app for app, owner in cur.fetchall() if owner_source(owner) == mine]
            for app in owned:
                if cascade:
                    self._mark_deleting(cur, app, now, "Deleting", f"{mine} was deleted with its apps", actor)
                else:
                    cur.execute("UPDATE apps SET owner = NULL, resource_version = resource_version + 1, "
                                "updated_at = ? WHERE name = ?", (now, app))
                    self._add_event(cur, now, "app", app, "Released",
                                    f"{mine} was deleted: the app keeps running, managed by hand", actor)
            if owned:
                self._bump_apps_version(cur)
            return owned
        return self._run(work, write=True)

    def sync_gitsource(self, name: str, epoch: int, apply: list, prune: list, status: dict, actor: str,
                       refuse=None) -> tuple:
        """Apply and prune one commit of source ``name`` in one fenced transaction; see Store.sync_gitsource."""
        mine = f"gitsource/{name}"

        def work(cur):
            self._check_epoch(cur, epoch)
            cur.execute("SELECT apps_version FROM meta WHERE id = 1" + self.for_update)
            cur.execute("SELECT 1 FROM gitsources WHERE name = ?", (name,))
            if cur.fetchone() is None:
                raise Conflict(f"{mine} was deleted while it synced: nothing applied")
            self._check_refusal(cur, refuse)
            now = self._now(cur)
            results, pruned = [], []
            for doc in apply:
                cur.execute("SELECT owner FROM apps WHERE name = ?", (doc["name"],))
                row = cur.fetchone()
                held_by = owner_source(row[0]) if row else None
                if held_by not in (None, mine):
                    raise Conflict(f"app {doc['name']!r} is owned by {held_by}, so {mine} leaves it alone")
                results.append(self._apply_one(cur, doc, actor, now))
            for app in prune:
                cur.execute("SELECT owner, deleting FROM apps WHERE name = ?", (app,))
                row = cur.fetchone()
                if row is None or owner_source(row[0]) != mine or row[1]:
                    continue  # never prune what this source does not own
                self._mark_deleting(cur, app, now, "Pruned", f"app is gone from {mine}: deleting it", actor)
                pruned.append(app)
            if pruned or any(r.action != "unchanged" for r in results):
                self._bump_apps_version(cur)
            cur.execute("UPDATE gitsources SET status = ? WHERE name = ?", (canonical_json(status), name))
            return results, pruned
        return self._run(work, write=True)

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

    # --- source archives -------------------------------------------------
    def has_source(self, digest: str) -> bool:
        """Whether the archive with this digest is stored."""
        def work(cur):
            cur.execute("SELECT 1 FROM sources WHERE digest = ?", (digest,))
            return cur.fetchone() is not None
        return self._run(work, write=False)

    def put_source(self, digest: str, data: bytes) -> None:
        """Store an archive under its digest; storing it again changes nothing."""
        def work(cur):
            cur.execute("INSERT INTO sources (digest, data, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (digest) DO NOTHING", (digest, self._blob(data), self._now(cur)))
        self._run(work, write=True)

    def get_source(self, digest: str) -> Optional[bytes]:
        """The archive's bytes, or None."""
        def work(cur):
            cur.execute("SELECT data FROM sources WHERE digest = ?", (digest,))
            row = cur.fetchone()
            return bytes(row[0]) if row else None
        return self._run(work, write=False)

    def _blob(self, data: bytes):
        """The parameter form of a binary value (bytes do for both drivers)."""
        return bytes(data)

    # --- desired instances -------------------------------------------------
    def list_desired(self, app: Optional[str] = None) -> list:
        """Desired instances, all or one app's, sorted by id."""
        def work(cur):
            if app is None:
                cur.execute(f"SELECT {DESIRED_COLUMNS} FROM desired_instances ORDER BY id")
            else:
                cur.execute(f"SELECT {DESIRED_COLUMNS} FROM desired_instances WHERE app = ? "
                            "ORDER BY id", (app,))
            decoded = {}
            return [desired_from_row(row, decoded) for row in cur.fetchall()]
        return self._run(work, write=False)

    def write_desired(self, epoch: int, upsert: list, delete: list) -> None:
        """Insert or replace ``upsert`` and delete the ids in ``delete``, fenced on ``epoch``."""
        def work(cur):
            self._check_epoch(cur, epoch)
            latest = {inst.id: inst for inst in upsert}  # one statement may not touch a row twice
            if latest:
                cur.execute_rows(
                    f"INSERT INTO desired_instances ({DESIRED_COLUMNS})",
                    [(inst.id, inst.app, inst.process, inst.node, inst.revision, inst.image,
                      canonical_json(inst.spec), inst.created_at) for inst in latest.values()],
                    "ON CONFLICT (id) DO UPDATE SET app = excluded.app, process = excluded.process, "
                    "node = excluded.node, revision = excluded.revision, image = excluded.image, "
                    "spec = excluded.spec, created_at = excluded.created_at")
            ids = list(delete)
            for i in range(0, len(ids), ROWS_A_STATEMENT):
                chunk = ids[i:i + ROWS_A_STATEMENT]
                cur.execute(f"DELETE FROM desired_instances WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
        self._run(work, write=True)

    # --- nodes ---------------------------------------------------------
    def upsert_node(self, name: str, address: str, labels: dict, capacity: dict, seen_at: float) -> None:
        """Record a node's reported facts; first_seen and cordoned are kept."""
        self.upsert_nodes([(name, address, labels, capacity, seen_at)])

    def upsert_nodes(self, nodes: list) -> None:
        """Record many nodes' facts, each ``(name, address, labels, capacity, seen_at)``, in one transaction."""
        def work(cur):
            latest = {n[0]: n for n in nodes}  # one statement may not touch a row twice
            cur.execute_rows(
                f"INSERT INTO nodes ({NODE_COLUMNS})",
                [(name, address, canonical_json(labels), canonical_json(capacity), False, seen_at, seen_at)
                 for name, address, labels, capacity, seen_at in latest.values()],
                "ON CONFLICT (name) DO UPDATE SET address = excluded.address, "
                "labels = excluded.labels, capacity = excluded.capacity, last_seen = excluded.last_seen")
        if nodes:
            self._run(work, write=True)

    def list_nodes(self) -> list:
        """All known nodes, sorted by name."""
        def work(cur):
            cur.execute(f"SELECT {NODE_COLUMNS}, draining FROM nodes ORDER BY name")
            return [node_from_row(row, draining=bool(row[7])) for row in cur.fetchall()]
        return self._run(work, write=False)

    def set_node_cordoned(self, name: str, cordoned: bool, draining: bool = False) -> bool:
        """Cordon (and with ``draining``, drain) or uncordon; False when there is no such node."""
        def work(cur):
            cur.execute("UPDATE nodes SET cordoned = ?, draining = ? WHERE name = ?",
                        (bool(cordoned), bool(cordoned and draining), name))
            return cur.rowcount > 0
        return self._run(work, write=True)

    # --- revisions -----------------------------------------------------
    def record_revisions(self, epoch: int, revs: list, keep: int = 10) -> None:
        """Add each of ``revs`` unless its number is recorded; keep the newest ``keep`` of
        each app; one fenced transaction."""
        def work(cur):
            self._check_epoch(cur, epoch)
            for rev in revs:
                self._record_revision(cur, rev, keep)
        if revs:
            self._run(work, write=True)

    def _record_revision(self, cur: Cursor, rev: RevisionRecord, keep: int) -> None:
        """Insert one revision (a known number is left alone) and drop its app's older than the newest ``keep``."""
        cur.execute(
            "INSERT INTO revisions (app, revision, hash, image, spec, source_digest, generation, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app, revision) DO NOTHING",
            (rev.app, int(rev.revision), rev.hash, rev.image, canonical_json(rev.spec),
             rev.source_digest, int(rev.generation), rev.created_at))
        cur.execute("SELECT revision FROM revisions WHERE app = ? ORDER BY revision DESC LIMIT 1 OFFSET ?",
                    (rev.app, int(keep) - 1))
        row = cur.fetchone()
        if row is not None:
            cur.execute("DELETE FROM revisions WHERE app = ? AND revision < ?", (rev.app, row[0]))

    def list_revisions(self, app: str) -> list:
        """The recorded revisions of ``app``, newest first."""
        def work(cur):
            cur.execute("SELECT app, revision, hash, image, spec, source_digest, generation, created_at "
                        "FROM revisions WHERE app = ? ORDER BY revision DESC", (app,))
            return [RevisionRecord(app=r[0], revision=int(r[1]), hash=r[2], image=r[3], spec=json.loads(r[4]),
                                   source_digest=r[5], generation=int(r[6]), created_at=r[7])
                    for r in cur.fetchall()]
        return self._run(work, write=False)

    # --- builds --------------------------------------------------------
    def enqueue_build(self, key: str, app: str, inputs: dict) -> BuildRecord:
        """Queue a build for ``key`` unless one exists; the row either way."""
        def work(cur):
            cur.execute(
                "INSERT INTO builds (key, app, inputs, state, phases, created_at) "
                "VALUES (?, ?, ?, 'queued', '{}', ?) ON CONFLICT (key) DO NOTHING",
                (key, app, canonical_json(inputs), self._now(cur)))
            cur.execute(f"SELECT {BUILD_COLUMNS} FROM builds WHERE key = ?", (key,))
            return build_from_row(cur.fetchone())
        return self._run(work, write=True)

    def retry_build(self, key: str) -> None:
        """Put a failed build back to queued, its outcome cleared; other states are left alone."""
        def work(cur):
            cur.execute(
                "UPDATE builds SET state = 'queued', error = NULL, worker = NULL, heartbeat_at = NULL, "
                "started_at = NULL, finished_at = NULL, image = NULL, cache = NULL, phases = '{}', layers = NULL, lock = NULL, progress = NULL, "
                "log_tail = NULL WHERE key = ? AND state = 'failed'",
                (key,))
        self._run(work, write=True)

    def claim_build(self, worker: str, stale_after: float) -> Optional[BuildRecord]:
        """Take the oldest claimable build and mark it building by ``worker``; None if none.

        Claimable: queued, or building with no heartbeat for ``stale_after``
        seconds (its worker is presumed dead; the new worker starts over).
        """
        def work(cur):
            now = self._now(cur)
            cur.execute(
                "SELECT id FROM builds WHERE state = 'queued' "
                "OR (state = 'building' AND heartbeat_at < ?) ORDER BY id LIMIT 1"
                + self.for_update + self.skip_locked, (now - stale_after,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute("UPDATE builds SET state = 'building', worker = ?, started_at = ?, "
                        "heartbeat_at = ?, progress = NULL WHERE id = ?", (worker, now, now, row[0]))
            cur.execute(f"SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?", (row[0],))
            return build_from_row(cur.fetchone())
        return self._run(work, write=True)

    def heartbeat_build(self, build_id: int, worker: str, progress: Optional[str] = None) -> None:
        """Mark that ``worker`` still works on the build, and what it does now (``progress``, if given).

        Raises Conflict when the build is no longer ``building`` by ``worker``
        (it was reclaimed as stale): the worker should give it up.
        """
        def work(cur):
            cur.execute("UPDATE builds SET heartbeat_at = ?, progress = COALESCE(?, progress) WHERE id = ? "
                        "AND worker = ? AND state = 'building'", (self._now(cur), progress, build_id, worker))
            if cur.rowcount == 0:
                raise Conflict(f"build {build_id} is not being built by {worker!r} any more")
        self._run(work, write=True)

    def finish_build(self, build_id: int, worker: str, *, state: str, image: Optional[str] = None,
                     cache: Optional[str] = None, phases: Optional[dict] = None,
                     error: Optional[str] = None, layers: Optional[list] = None, lock: Optional[str] = None,
                     log_tail: Optional[str] = None) -> None:
        """Record the outcome of a build ``worker`` holds.

        Raises ValueError for a state other than succeeded/failed, and
        Conflict when ``worker`` no longer holds the build.
        """
        if state not in ("succeeded", "failed"):
            raise ValueError(f"a build finishes as 'succeeded' or 'failed', not {state!r}")

        def work(cur):
            cur.execute(
                "UPDATE builds SET state = ?, image = ?, "
                "cache = ?, phases = ?, error = ?, finished_at = ?, layers = ?, lock = ?, log_tail = ?, "
                "progress = NULL WHERE id = ? AND worker = ? AND state = 'building'",
                (state, image, cache, canonical_json(phases or {}),
                 error, self._now(cur), canonical_json(layers) if layers is not None else None, lock,
                 log_tail, build_id, worker))
            if cur.rowcount == 0:
                raise Conflict(f"build {build_id} is not being built by {worker!r}, so it cannot "
                               f"be finished by it")
        self._run(work, write=True)

    def set_build_layers(self, build_id: int, layers: list) -> None:
        """Give a succeeded build its ``layers`` (archives packed); Conflict when it is not succeeded."""
        def work(cur):
            cur.execute("UPDATE builds SET layers = ? WHERE id = ? AND state = 'succeeded'",
                        (canonical_json(layers), build_id))
            if cur.rowcount == 0:
                raise Conflict(f"build {build_id} has not succeeded, so its layers cannot be set")
        self._run(work, write=True)

    def get_build(self, key: str) -> Optional[BuildRecord]:
        """The build for ``key``, or None."""
        def work(cur):
            cur.execute(f"SELECT {BUILD_COLUMNS} FROM builds WHERE key = ?", (key,))
            row = cur.fetchone()
            return build_from_row(row) if row else None
        return self._run(work, write=False)

    def list_builds(self, app: Optional[str] = None) -> list:
        """Builds (all, or one app's), newest first."""
        def work(cur):
            if app is None:
                cur.execute(f"SELECT {BUILD_COLUMNS} FROM builds ORDER BY id DESC")
            else:
                cur.execute(f"SELECT {BUILD_COLUMNS} FROM builds WHERE app = ? ORDER BY id DESC",
                            (app,))
            return [build_from_row(row) for row in cur.fetchall()]
        return self._run(work, write=False)

    def list_build_states(self) -> list:
        """See Store.list_build_states."""
        def work(cur):
            cur.execute("SELECT key, app, state, image, error, layers FROM builds")
            return [BuildState(key=r[0], app=r[1], state=r[2], image=r[3], error=r[4],
                               layers=json.loads(r[5]) if r[5] else None) for r in cur.fetchall()]
        return self._run(work, write=False)

    def count_builds(self) -> dict:
        def work(cur):
            cur.execute("SELECT state, COUNT(*) FROM builds GROUP BY state")
            return {state: int(n) for state, n in cur.fetchall()}
        return self._run(work, write=False)

    # --- events --------------------------------------------------------
    def add_event(self, kind: str, name: str, reason: str, message: str, actor: str) -> None:
        """Append an event stamped with the store's clock."""
        def work(cur):
            self._add_event(cur, self._now(cur), kind, name, reason, message, actor)
        self._run(work, write=True)

    def add_events(self, events: list) -> None:
        """Append many ``(kind, name, reason, message, actor)`` events in one transaction."""
        if not events:
            return

        def work(cur):
            now = self._now(cur)
            cur.execute_rows("INSERT INTO events (time, kind, name, reason, message, actor)",
                             [(now, kind, name, reason, message, actor)
                              for kind, name, reason, message, actor in events])
        self._run(work, write=True)

    def _add_event(self, cur, now, kind, name, reason, message, actor) -> None:
        cur.execute("INSERT INTO events (time, kind, name, reason, message, actor) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (now, kind, name, reason, message, actor))

    def list_events(self, kind: Optional[str] = None, name: Optional[str] = None, limit: int = 100) -> list:
        """The newest ``limit`` events (filtered by kind and/or name), oldest first."""
        def work(cur):
            where, params = [], []
            if kind is not None:
                where.append("kind = ?")
                params.append(kind)
            if name is not None:
                where.append("name = ?")
                params.append(name)
            clause = (" WHERE " + " AND ".join(where)) if where else ""
            cur.execute(f"SELECT {EVENT_COLUMNS} FROM events{clause} ORDER BY id DESC LIMIT ?",
                        (*params, int(limit)))
            return [event_from_row(row) for row in reversed(cur.fetchall())]
        return self._run(work, write=False)

    def prune_events(self, max_age: float, keep: int) -> int:
        """See Store.prune_events: by age, then by count (the newest ``keep`` by id stay)."""
        def work(cur):
            cur.execute("DELETE FROM events WHERE time < ?", (self._now(cur) - max_age,))
            deleted = max(cur.rowcount, 0)
            cur.execute("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (int(keep),))
            row = cur.fetchone()
            if row is not None:
                cur.execute("DELETE FROM events WHERE id <= ?", (row[0],))
                deleted += max(cur.rowcount, 0)
            return deleted
        return self._run(work, write=True)

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
