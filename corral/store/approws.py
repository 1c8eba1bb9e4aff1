"""The rows of apps and their revisions.

A part of :class:`corral.store.sql.SQLStore`: its queries run in the store's one transaction
helper (``self._run``), fenced by ``self._check_epoch`` where the leader writes.
"""
import json
from typing import Optional

from corral.store.base import AppRecord, ApplyResult, Conflict, RevisionRecord, owner_source
from corral.store.cursor import ROWS_A_STATEMENT, Cursor
from corral.store.schema import APP_COLUMNS, GITSOURCE_COLUMNS, app_from_row, canonical_json


NAMES_A_STATEMENT = 500   # names of one IN (...) list: well within SQLite's bound on a statement's variables

class AppRows:
    """The queries of apps and their revisions (mixed into :class:`corral.store.sql.SQLStore`)."""

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

    def list_apps(self, names=None) -> list:
        """All apps, those being deleted included, sorted by name; only those of ``names`` when given."""
        def work(cur):
            if names is None:
                cur.execute(f"SELECT {APP_COLUMNS} FROM apps ORDER BY name")
                return [app_from_row(row) for row in cur.fetchall()]
            wanted, found = sorted(set(names)), []
            for i in range(0, len(wanted), NAMES_A_STATEMENT):
                chunk = wanted[i:i + NAMES_A_STATEMENT]
                cur.execute(f"SELECT {APP_COLUMNS} FROM apps WHERE name IN ({', '.join('?' * len(chunk))})", chunk)
                found.extend(app_from_row(row) for row in cur.fetchall())
            return sorted(found, key=lambda a: a.name)
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
