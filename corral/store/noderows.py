"""The rows of nodes and the desired instances placed on them.

A part of :class:`corral.store.sql.SQLStore`: its queries run in the store's one transaction
helper (``self._run``), fenced by ``self._check_epoch`` where the leader writes.
"""
from typing import Optional

from corral.store.cursor import ROWS_A_STATEMENT
from corral.store.schema import DESIRED_COLUMNS, NODE_COLUMNS, canonical_json, desired_from_row, node_from_row


class NodeRows:
    """The queries of nodes and the desired instances placed on them (mixed into :class:`corral.store.sql.SQLStore`)."""

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
