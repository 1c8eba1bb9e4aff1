"""The rows of named API tokens and of the cluster's own secrets: a part of :class:`corral.store.sql.SQLStore`.

A token's row holds the sha256 of its secret, never the secret: whoever reads
the store (or a backup of it) learns no credential. Rows are never deleted: a
revoked token stays listed, its name stays taken, and :meth:`has_api_tokens`,
once true, stays true (corral/auth.py: the cluster-key tokens end there).
Every change of a token writes an event (kind ``token``) in its transaction.
"""
import dataclasses
import time
from typing import Optional

from corral.store.base import ApiTokenRecord, Conflict

TOKEN_COLUMNS = ("name, token_hash, role, created_at, created_by, expires_at, revoked_at, revoked_by, "
                 "last_used_at")
_MARKS = "(" + ", ".join("?" * len(TOKEN_COLUMNS.split(","))) + ")"


def token_from_row(row) -> ApiTokenRecord:
    return ApiTokenRecord(name=row[0], token_hash=row[1], role=row[2], created_at=row[3], created_by=row[4],
                          expires_at=row[5], revoked_at=row[6], revoked_by=row[7], last_used_at=row[8])


def _created_message(record: ApiTokenRecord) -> str:
    until = "never expires" if record.expires_at is None else \
        "expires " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires_at))
    return f"{record.role} token {record.name} created ({until})"


class TokenRows:
    """The store's methods for API tokens; they need the SQLStore's ``_run``, ``_now`` and ``_add_event``."""

    def add_api_token(self, record: ApiTokenRecord, actor: str, replace: bool = False) -> ApiTokenRecord:
        """Insert ``record`` (as of the store's time) and its event; a taken name is a Conflict unless ``replace``."""
        def work(cur):
            now = self._now(cur)
            row = dataclasses.replace(record, created_at=now, created_by=actor, revoked_at=None, revoked_by=None,
                                      last_used_at=None)
            cur.execute("SELECT name FROM api_tokens WHERE name = ?" + self.for_update, (record.name,))
            taken = cur.fetchone() is not None
            if taken and not replace:
                raise Conflict(f"an API token named {record.name!r} exists already (revoked or not): pick another "
                               f"name, or `corral token revoke` it and use a new one")
            if taken:
                cur.execute("DELETE FROM api_tokens WHERE name = ?", (record.name,))
            cur.execute(f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES {_MARKS}", _values(row))
            self._add_event(cur, now, "token", row.name, "Replaced" if taken else "Created", _created_message(row),
                            actor)
            return row
        return self._run(work, write=True)

    def find_api_token(self, token_hash: str) -> Optional[ApiTokenRecord]:
        """The token whose secret hashes to ``token_hash`` (an indexed lookup), else None."""
        def work(cur):
            cur.execute(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?", (token_hash,))
            row = cur.fetchone()
            return None if row is None else token_from_row(row)
        return self._run(work, write=False)

    def list_api_tokens(self) -> list:
        """Every named token, sorted by name."""
        def work(cur):
            cur.execute(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name")
            return [token_from_row(r) for r in cur.fetchall()]
        return self._run(work, write=False)

    def revoke_api_token(self, name: str, actor: str) -> Optional[ApiTokenRecord]:
        """Revoke ``name`` (a revoked one is left as it is); the row after, or None when there is none."""
        def work(cur):
            now = self._now(cur)
            cur.execute("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE name = ? AND revoked_at IS NULL",
                        (now, actor, name))
            if cur.rowcount:
                self._add_event(cur, now, "token", name, "Revoked", f"token {name} revoked", actor)
            return self._token_named(cur, name)
        return self._run(work, write=True)

    def rotate_api_token(self, name: str, token_hash: str, actor: str) -> Optional[ApiTokenRecord]:
        """A new secret (``token_hash``) for the live token ``name``; None when there is no such token."""
        def work(cur):
            now = self._now(cur)
            old = self._token_named(cur, name, lock=True)
            if old is None:
                return None
            if old.revoked_at is not None:
                raise Conflict(f"token {name!r} is revoked: make a new one with `corral token create`")
            cur.execute("UPDATE api_tokens SET token_hash = ?, created_at = ?, created_by = ?, last_used_at = NULL "
                        "WHERE name = ?", (token_hash, now, actor, name))
            self._add_event(cur, now, "token", name, "Rotated",
                            f"token {name} has a new secret; the old one is refused", actor)
            return self._token_named(cur, name)
        return self._run(work, write=True)

    def touch_api_token(self, name: str, when: float) -> None:
        """Set the token's ``last_used_at`` to ``when``."""
        def work(cur):
            cur.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (when, name))
        self._run(work, write=True)

    def has_api_tokens(self) -> bool:
        """Whether any row of ``api_tokens`` exists."""
        def work(cur):
            cur.execute("SELECT 1 FROM api_tokens LIMIT 1")
            return cur.fetchone() is not None
        return self._run(work, write=False)

    def cluster_secret(self, name: str, make) -> str:
        """The secret ``name``, made with ``make()`` and kept on the first call (a concurrent first call
        of another daemon wins or loses as one INSERT: both then read the one kept)."""
        def read(cur):
            cur.execute("SELECT value FROM cluster_secrets WHERE name = ?", (name,))
            row = cur.fetchone()
            return None if row is None else row[0]
        value = self._run(read, write=False)
        if value is not None:
            return value

        def write(cur):
            cur.execute("INSERT INTO cluster_secrets (name, value, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO NOTHING", (name, make(), self._now(cur)))
            return read(cur)
        return self._run(write, write=True)

    def _token_named(self, cur, name, lock=False) -> Optional[ApiTokenRecord]:
        cur.execute(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE name = ?" + (self.for_update if lock else ""),
                    (name,))
        row = cur.fetchone()
        return None if row is None else token_from_row(row)


def _values(record: ApiTokenRecord) -> tuple:
    return (record.name, record.token_hash, record.role, record.created_at, record.created_by, record.expires_at,
            record.revoked_at, record.revoked_by, record.last_used_at)
