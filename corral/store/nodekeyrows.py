"""Join tokens and nodes' own keys (issue 14): a part of :class:`corral.store.sql.SQLStore`.

A join token is kept as its id and the sha256 of its secret, so that reading the store
does not give one away; redeeming it is one transaction that spends it and records the
node's public key, so two reconcilers given the same token cannot both take it. The node
that spent it may ask again with the same key (the answer to its join was lost, and it
asks the next reconciler): it is answered as the first time; anyone else is refused.
"""
import hmac
from typing import Optional

from corral.store.base import NodeKeyRecord

NODE_KEY_COLUMNS = "name, public_key, joined_at, revoked_at"


def node_key_from_row(row) -> NodeKeyRecord:
    return NodeKeyRecord(name=row[0], public_key=row[1], joined_at=row[2], revoked_at=row[3])


class NodeKeyRows:
    """The store's methods for join tokens and node keys; they need the SQLStore's ``_run`` and ``_now``."""

    def add_join_token(self, token_id: str, secret_sha256: str, ttl: float, actor: str) -> float:
        """See :meth:`corral.store.base.Store.add_join_token`."""
        def work(cur):
            now = self._now(cur)
            cur.execute("INSERT INTO join_tokens (id, secret_sha256, expires_at, created_at, created_by) "
                        "VALUES (?, ?, ?, ?, ?)", (token_id, secret_sha256, now + ttl, now, actor))
            self._add_event(cur, now, "node", f"join-token/{token_id}", "JoinTokenCreated",
                            f"join token {token_id} created, valid until {now + ttl:.0f}", actor)
            return now + ttl
        return self._run(work, write=True)

    def redeem_join_token(self, token_id: str, secret_sha256: str, name: str, public_key: str) -> Optional[str]:
        """See :meth:`corral.store.base.Store.redeem_join_token`."""
        def work(cur):
            now = self._now(cur)
            cur.execute(f"SELECT secret_sha256, expires_at, used_by FROM join_tokens WHERE id = ?{self.for_update}",
                        (token_id,))
            row = cur.fetchone()
            if row is None or not hmac.compare_digest(row[0].encode(), secret_sha256.encode()):
                return "the join token is not one this cluster issued"
            if row[2] is not None:
                if row[2] == name and self._holds(cur, name, public_key):
                    return None   # the same node and key again: the answer to its join was lost on the way
                return f"the join token was already used (by node {row[2]}); ask for a new one"
            if row[1] <= now:
                return "the join token has expired; ask for a new one"
            refusal = self._key_taken(cur, name, public_key)
            if refusal:
                return refusal
            cur.execute("UPDATE join_tokens SET used_at = ?, used_by = ? WHERE id = ?", (now, name, token_id))
            cur.execute(f"INSERT INTO node_keys ({NODE_KEY_COLUMNS}) VALUES (?, ?, ?, NULL) "
                        "ON CONFLICT (name) DO UPDATE SET public_key = excluded.public_key, "
                        "joined_at = excluded.joined_at, revoked_at = NULL", (name, public_key, now))
            self._add_event(cur, now, "node", name, "Joined", f"node {name} joined with its own key "
                            f"(join token {token_id})", f"node/{name}")
            return None
        return self._run(work, write=True)

    def _holds(self, cur, name, public_key):
        """Whether node ``name``'s live key is ``public_key``."""
        cur.execute("SELECT 1 FROM node_keys WHERE name = ? AND public_key = ? AND revoked_at IS NULL",
                    (name, public_key))
        return cur.fetchone() is not None

    def _key_taken(self, cur, name, public_key):
        """Why ``name`` may not join with ``public_key`` (a live key of that name, or the key another
        node's), else None."""
        cur.execute(f"SELECT {NODE_KEY_COLUMNS} FROM node_keys WHERE name = ? OR public_key = ?{self.for_update}",
                    (name, public_key))
        for held in map(node_key_from_row, cur.fetchall()):
            if held.name == name and held.revoked_at is None and held.public_key is not None:
                return f"node {name} has already joined with another key; revoke it first (corral node revoke {name})"
            if held.name != name:
                return "this key is already another node's"
        return None

    def list_node_keys(self) -> list:
        """See :meth:`corral.store.base.Store.list_node_keys`."""
        def work(cur):
            cur.execute(f"SELECT {NODE_KEY_COLUMNS} FROM node_keys ORDER BY name")
            return [node_key_from_row(r) for r in cur.fetchall()]
        return self._run(work, write=False)

    def revoke_node_key(self, name: str, actor: str) -> bool:
        """See :meth:`corral.store.base.Store.revoke_node_key`."""
        def work(cur):
            now = self._now(cur)
            cur.execute("UPDATE node_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
            if cur.rowcount == 0:
                cur.execute("SELECT 1 FROM nodes WHERE name = ? UNION ALL SELECT 1 FROM node_keys WHERE name = ?",
                            (name, name))
                if cur.fetchone() is None:
                    return False
                cur.execute(f"INSERT INTO node_keys ({NODE_KEY_COLUMNS}) VALUES (?, NULL, NULL, ?) "
                            "ON CONFLICT (name) DO NOTHING", (name, now))
            self._add_event(cur, now, "node", name, "Revoked", f"node {name}'s key revoked: its messages are "
                            "refused from now on", actor)
            return True
        return self._run(work, write=True)
