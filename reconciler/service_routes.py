"""API routes of app services and their backups (added to :class:`reconciler.api.Api`).

Routes::

    GET    /v1/services[?app=NAME]                  every service (no password), with its last backup
    GET    /v1/services/APP/NAME                    one service, its backups and the env names it gives
    POST   /v1/services/APP/NAME/rotate             a new credential: the instances roll, the old login goes
    GET    /v1/backups[?app=NAME&service=S]         recorded backups, oldest first, VERIFIED and why
    POST   /v1/apps/APP/backups                     {"service": S | null}: take (and verify) a backup now
    POST   /v1/apps/APP/backups/ID/restore          {"force": bool}: into the live service, after a backup;
                                                    {"toNew": NAME}: into a new PostgreSQL service NAME

A backup is taken by the reconciler that answers (each has the settings and the
backup folder), within the request.
"""
import re

from reconciler.httpio import HttpError, json_body
from services.backups import BackupRefused
from services.base import ServiceError
from services.names import env_name


def service_json(row, last_backup=None):
    """A service as the API shows it: never its password. Pure."""
    return {"app": row.app, "name": row.name, "type": row.type, "server": row.server, "state": row.state,
            "onDelete": row.on_delete, "generation": row.generation, "size": row.size, "message": row.message,
            "rotating": bool(row.rotate_requested or row.old_generations), "created_at": row.created_at,
            "updated_at": row.updated_at,
            "lastBackup": backup_json(last_backup) if last_backup else None}


def backup_json(b):
    """A recorded backup as the API shows it. Pure."""
    m = b.manifest
    return {"id": b.id, "app": b.app, "service": b.service, "type": b.type, "path": b.path, "size": b.size,
            "sha256": b.sha256, "verified": b.verified, "reason": b.reason, "created_at": b.created_at,
            "slot": b.slot, "seconds": m.get("seconds", {}), "facts": m.get("facts", {}),
            "server_version": m.get("server_version"), "tool_version": m.get("tool_version")}


class ServiceRoutes:
    """Handlers for services and backups. ``keeper`` is the reconciler's ServiceKeeper."""

    def __init__(self, store, keeper, kick):
        self.store, self.keeper, self.kick = store, keeper, kick

    def routes(self):
        """``(method, pattern, handler, needs_auth)`` entries for the API's route table."""
        return [
            ("GET", r"/v1/services", self.list_services, True),
            ("GET", r"/v1/services/(?P<app>[^/]+)/(?P<name>[^/]+)", self.get_service, True),
            ("POST", r"/v1/services/(?P<app>[^/]+)/(?P<name>[^/]+)/rotate", self.rotate, True),
            ("GET", r"/v1/backups", self.list_backups, True),
            ("POST", r"/v1/apps/(?P<app>[^/]+)/backups", self.create_backups, True),
            ("POST", r"/v1/apps/(?P<app>[^/]+)/backups/(?P<backup>[^/]+)/restore", self.restore, True),
        ]

    def _row(self, app, name):
        for row in self.store.list_services(app):
            if row.name == name:
                return row
        raise HttpError(404, f"app {app!r} has no service {name!r} (see `corral get services`)")

    def list_services(self, environ, query):
        last = {}
        for b in self.store.list_service_backups(query.get("app")):
            last[(b.app, b.service)] = b
        return 200, [service_json(r, last.get((r.app, r.name))) for r in self.store.list_services(query.get("app"))]

    def get_service(self, environ, query, app, name):
        row = self._row(app, name)
        backups = self.store.list_service_backups(app, name)
        out = service_json(row, backups[-1] if backups else None)
        out["backups"] = [backup_json(b) for b in backups]
        out["env"] = [env_name(name)] + {"postgresql": ["DATABASE_URL"], "redis": ["REDIS_URL", "REDIS_KEY_PREFIX"]}[
            row.type]
        mine = re.compile(rf"\bservice {re.escape(name)}(?![-a-z0-9])")
        out["events"] = [{"time": e.time, "reason": e.reason, "message": e.message}
                         for e in self.store.list_events("app", app, limit=100) if mine.search(e.message)]
        return 200, out

    def rotate(self, environ, query, app, name):
        self._row(app, name)
        self.store.request_rotation(app, name)
        self.kick(app)
        return 202, {"app": app, "name": name, "rotating": True}

    def list_backups(self, environ, query):
        return 200, [backup_json(b) for b in self.store.list_service_backups(query.get("app"), query.get("service"))]

    def create_backups(self, environ, query, app):
        body = json_body(environ)
        rows = self.store.list_services(app)
        if body.get("service"):
            rows = [self._row(app, body["service"])]
        if not rows:
            raise HttpError(404, f"app {app!r} has no services to back up")
        made = []
        for row in rows:
            try:
                made.append(self.keeper.create_backup(row))
            except (ServiceError, OSError) as e:
                raise HttpError(409, f"backup of {app}/{row.name} refused: {e}")
        return 200, [backup_json(b) for b in self.store.list_service_backups(app) if b.id in {m.id for m in made}]

    def restore(self, environ, query, app, backup):
        body = json_body(environ)
        recorded = [b for b in self.store.list_service_backups(app) if b.id == backup]
        if not recorded:
            raise HttpError(404, f"app {app!r} has no backup {backup!r} (see `corral backups list {app}`)")
        row = self._row(app, recorded[0].service)
        to_new = body.get("toNew")
        try:
            if to_new:
                made = self.keeper.restore_to_new(row, backup, str(to_new))
                return 200, {"app": app, "service": made.name, "restored": backup, "safetyBackup": None}
            safety = self.keeper.restore_backup(row, backup, force=bool(body.get("force")))
        except (BackupRefused, ValueError) as e:
            raise HttpError(409, str(e))
        except (ServiceError, OSError) as e:
            raise HttpError(500, f"restoring {backup} failed: {e}")
        return 200, {"app": app, "service": row.name, "restored": backup, "safetyBackup": safety.id}
