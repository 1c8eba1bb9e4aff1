"""The layer keys and the builders serving layers (builder/web.py, reconciler/layer_urls.py): a part of
:class:`corral.store.sql.SQLStore`.

A layer key signs the URLs the leader gives each node for the layers it is
assigned; the builders check them. It is neither the cluster key (which a
builder never holds) nor derived from it: 32 random bytes made by whoever
needs one first (an ``INSERT ... ON CONFLICT DO NOTHING`` of generation 1,
then a read, so two daemons racing get the same key). A rotation adds the
next generation; signers use the newest, checkers accept the newest two.
"""
import secrets

from corral.store.base import BuilderRecord

KEY_BYTES = 32


class LayerRows:
    """The store's methods for layer keys and the builders serving layers (SQLStore's ``_run``, ``_now``)."""

    def builder_seen(self, name: str, url: str) -> None:
        """Record that builder ``name`` serves layers at ``url`` now (the store's clock)."""
        def work(cur):
            cur.execute("INSERT INTO builders (name, url, seen_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at",
                        (name, url, self._now(cur)))
        self._run(work, write=True)

    def list_builders(self) -> list:
        """Every builder that has said where it serves, as BuilderRecords sorted by name; ``age`` is
        the seconds since it last did, by the store's clock (no daemon's clock is compared with it)."""
        def work(cur):
            now = self._now(cur)
            cur.execute("SELECT name, url, seen_at FROM builders ORDER BY name")
            return [BuilderRecord(name=r[0], url=r[1], age=max(0.0, now - float(r[2]))) for r in cur.fetchall()]
        return self._run(work, write=False)

    def layer_keys(self, keep: int = 2) -> list:
        """The newest ``keep`` layer keys, newest first, as ``(generation, key bytes)``; the first
        one is made when there is none (whoever asks first; a racing second gets the same)."""
        def read(cur):
            cur.execute("SELECT generation, secret FROM layer_keys ORDER BY generation DESC LIMIT ?", (keep,))
            return [(int(g), bytes.fromhex(s)) for g, s in cur.fetchall()]

        def make(cur):
            cur.execute("INSERT INTO layer_keys (generation, secret, created_at) VALUES (1, ?, ?) "
                        "ON CONFLICT (generation) DO NOTHING", (secrets.token_hex(KEY_BYTES), self._now(cur)))
            return read(cur)
        return self._run(read, write=False) or self._run(make, write=True)

    def rotate_layer_key(self) -> int:
        """Add a new layer key, the next generation; return the newest generation. URLs signed with
        the one before stay good while they last (checkers accept the newest two). Two rotations at
        once make one new key (the second's insert finds the generation taken)."""
        def work(cur):
            cur.execute("SELECT COALESCE(MAX(generation), 0) FROM layer_keys")
            generation = int(cur.fetchone()[0]) + 1
            cur.execute("INSERT INTO layer_keys (generation, secret, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (generation) DO NOTHING",
                        (generation, secrets.token_hex(KEY_BYTES), self._now(cur)))
            return generation
        return self._run(work, write=True)
