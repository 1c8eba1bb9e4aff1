"""The rows of app services and their backups (services/): a part of :class:`corral.store.sql.SQLStore`."""
import json
from typing import Optional

from corral.store.base import Conflict, ServiceBackupRecord, ServiceRecord
from corral.store.schema import canonical_json

SERVICE_COLUMNS = ("app, name, type, server, state, on_delete, generation, password, old_generations, rotate_requested, "
                   "message, size, created_at, updated_at")
BACKUP_COLUMNS = "id, app, service, type, path, size, sha256, verified, reason, manifest, slot, created_at"


def service_from_row(row) -> ServiceRecord:
    return ServiceRecord(app=row[0], name=row[1], type=row[2], server=row[3], state=row[4], on_delete=row[5],
                         generation=int(row[6]), password=row[7], old_generations=tuple(json.loads(row[8])),
                         rotate_requested=bool(row[9]), message=row[10], size=None if row[11] is None else int(row[11]),
                         created_at=row[12], updated_at=row[13])


def backup_from_row(row) -> ServiceBackupRecord:
    return ServiceBackupRecord(id=row[0], app=row[1], service=row[2], type=row[3], path=row[4], size=int(row[5]),
                               sha256=row[6], verified=bool(row[7]), reason=row[8], manifest=json.loads(row[9]),
                               slot=row[10], created_at=row[11])


def _where(pairs):
    """``(" WHERE a = ? AND b = ?", params)`` of the pairs whose value is not None."""
    given = [(column, value) for column, value in pairs if value is not None]
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{c} = ?" for c, _ in given), tuple(v for _, v in given)


class ServiceRows:
    """The store's methods for app services; they need the SQLStore's ``_run``, ``_now`` and ``_check_epoch``."""

    def list_services(self, app: Optional[str] = None) -> list:
        """ServiceRecords (all, or one app's), sorted by app and name."""
        where, params = _where([("app", app)])

        def work(cur):
            cur.execute(f"SELECT {SERVICE_COLUMNS} FROM services{where} ORDER BY app, name", params)
            return [service_from_row(r) for r in cur.fetchall()]
        return self._run(work, write=False)

    def put_service(self, epoch: int, record: ServiceRecord) -> None:
        """Insert or replace ``record`` (fenced on ``epoch``), keeping a known row's ``created_at``."""
        def work(cur):
            self._check_epoch(cur, epoch)
            now = self._now(cur)
            cur.execute(
                f"INSERT INTO services ({SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (app, name) DO UPDATE SET type = excluded.type, server = excluded.server, "
                "state = excluded.state, on_delete = excluded.on_delete, generation = excluded.generation, password = excluded.password, "
                "old_generations = excluded.old_generations, rotate_requested = excluded.rotate_requested, "
                "message = excluded.message, size = excluded.size, updated_at = excluded.updated_at",
                self._service_values(record, now))
        self._run(work, write=True)

    def add_service(self, record: ServiceRecord) -> bool:
        """Record a service made by hand (a restore into a new one); False when ``app/name`` is taken."""
        def work(cur):
            now = self._now(cur)
            cur.execute(
                f"INSERT INTO services ({SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (app, name) DO NOTHING", self._service_values(record, now))
            return cur.rowcount > 0
        return self._run(work, write=True)

    @staticmethod
    def _service_values(record, now):
        return (record.app, record.name, record.type, record.server, record.state, record.on_delete,
                int(record.generation), record.password, canonical_json(list(record.old_generations)),
                bool(record.rotate_requested), record.message, record.size, now, now)

    def delete_service(self, epoch: int, app: str, name: str) -> None:
        """Forget ``app/name`` (fenced on ``epoch``)."""
        def work(cur):
            self._check_epoch(cur, epoch)
            cur.execute("DELETE FROM services WHERE app = ? AND name = ?", (app, name))
        self._run(work, write=True)

    def request_rotation(self, app: str, name: str) -> bool:
        """Mark ``app/name`` for a new credential; False when there is no such service."""
        def work(cur):
            cur.execute("UPDATE services SET rotate_requested = ? WHERE app = ? AND name = ?", (True, app, name))
            return cur.rowcount > 0
        return self._run(work, write=True)

    def add_service_backup(self, record: ServiceBackupRecord, epoch: Optional[int] = None) -> None:
        """Record a finished backup. One of a schedule's slot is the leader's (``epoch``: Fenced
        when the lease has another) and the slot's only one (Conflict when it has one)."""
        def work(cur):
            if record.slot is not None:
                if epoch is None:
                    raise ValueError("the backup of a slot is recorded by the leader: give its epoch")
                self._check_epoch(cur, epoch)
                cur.execute("SELECT id FROM service_backups WHERE app = ? AND service = ? AND slot = ?",
                            (record.app, record.service, record.slot))
                held = cur.fetchone()
                if held is not None:
                    raise Conflict(f"slot {record.slot} of service {record.app}/{record.service} "
                                   f"has its backup already ({held[0]})")
            cur.execute(f"INSERT INTO service_backups ({BACKUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (record.id, record.app, record.service, record.type, record.path, int(record.size),
                         record.sha256, bool(record.verified), record.reason, canonical_json(record.manifest),
                         record.slot, record.created_at))
        self._run(work, write=True)

    def list_service_backups(self, app: Optional[str] = None, service: Optional[str] = None) -> list:
        """ServiceBackupRecords (all, one app's or one service's), oldest first."""
        where, params = _where([("app", app), ("service", service)])

        def work(cur):
            cur.execute(f"SELECT {BACKUP_COLUMNS} FROM service_backups{where} ORDER BY created_at, id", params)
            return [backup_from_row(r) for r in cur.fetchall()]
        return self._run(work, write=False)

    def delete_service_backup(self, backup_id: str) -> None:
        """Forget the backup ``backup_id``."""
        def work(cur):
            cur.execute("DELETE FROM service_backups WHERE id = ?", (backup_id,))
        self._run(work, write=True)
