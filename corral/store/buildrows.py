"""The rows of builds and the source archives they are made from.

A part of :class:`corral.store.sql.SQLStore`: its queries run in the store's one transaction
helper (``self._run``), fenced by ``self._check_epoch`` where the leader writes.
"""
import json
from typing import Optional

from corral.store.base import BuildRecord, BuildState, Conflict
from corral.store.schema import BUILD_COLUMNS, build_from_row, canonical_json


class BuildRows:
    """The queries of builds and the source archives they are made from (mixed into :class:`corral.store.sql.SQLStore`)."""

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
