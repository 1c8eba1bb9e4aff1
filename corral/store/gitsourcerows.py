"""The rows of GitOps sources.

A part of :class:`corral.store.sql.SQLStore`: its queries run in the store's one transaction
helper (``self._run``), fenced by ``self._check_epoch`` where the leader writes.
"""
from typing import Optional

from corral.store.base import Conflict, GitSourceRecord, owner_source
from corral.store.schema import GITSOURCE_COLUMNS, canonical_json, gitsource_from_row


class GitSourceRows:
    """The queries of GitOps sources (mixed into :class:`corral.store.sql.SQLStore`)."""

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
