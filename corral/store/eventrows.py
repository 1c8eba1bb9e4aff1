"""The rows of events.

A part of :class:`corral.store.sql.SQLStore`: its queries run in the store's one transaction
helper (``self._run``), fenced by ``self._check_epoch`` where the leader writes.
"""
from typing import Optional

from corral.store.schema import EVENT_COLUMNS, event_from_row


class EventRows:
    """The queries of events (mixed into :class:`corral.store.sql.SQLStore`)."""

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
