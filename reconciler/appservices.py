"""The leader's shell around app services: provision what the plan says, give apps their URLs, take backups.

:meth:`ServiceKeeper.sync` reads the apps and the services table, asks each
provisioner (every ``services_check`` seconds) whether the ready services are
still on their servers, calls :func:`services.plan.plan`, carries out its
buckets one service at a time (a failure is an event and the row's ``failed``
state, retried after a backoff that doubles up to five minutes), and returns the
apps whose environment changed so that the loop rolls them.

:meth:`ServiceKeeper.env_for` gives the control loop each app's service
environment (``DATABASE_URL``, ``REDIS_URL``, ``<NAME>_URL``,
``REDIS_KEY_PREFIX``), or None while a service the app asks for has never been
provisioned: its instances are not booted without their database.
"""
import dataclasses
import logging
import time

from corral.store import Conflict, Fenced, ServiceBackupRecord, ServiceRecord
from services.backups import Backups, BackupRefused
from services.base import Credential, Service, ServiceError
from services.names import check_label, new_password, without_password
from services.retention import to_remove
from services.schedule import due_slot, slot_time
from services.plan import FAILED, READY, RETAIN, RETAINED, Known, Wanted, plan, service_env

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 2.0, 300.0


def make_provisioners(servers, timeout):
    """``{type: Provisioner}`` for the servers the settings name (passwords read from their files now)."""
    out = {}
    if servers.postgresql:
        from services.postgresql import PostgresProvisioner
        out["postgresql"] = PostgresProvisioner(servers.postgresql, servers.password("postgresql"), timeout=timeout)
    if servers.redis:
        from services.redis import RedisProvisioner
        out["redis"] = RedisProvisioner(servers.redis, servers.password("redis"), timeout=timeout)
    return out


def wanted_services(apps):
    """Wanted services of the live apps (not being deleted), and the names of those apps. Pure."""
    wanted, live = [], set()
    for rec in apps:
        if rec.deleting:
            continue
        live.add(rec.name)
        for name, svc in (rec.spec.get("services") or {}).items():
            wanted.append(Wanted(rec.name, name, svc["type"], svc.get("onDelete", RETAIN)))
    return wanted, live


def known_service(row, present=True):
    """The planner's view of a service row. Pure."""
    return Known(row.app, row.name, row.type, state=row.state, on_delete=row.on_delete, generation=row.generation,
                 rotate=row.rotate_requested, old_generations=tuple(row.old_generations), present=present)


def rolled_onto(rows, desired, observed_ids, url_of):
    """``{(app, name)}`` of the services whose app's instances all carry the current URL (every desired
    instance's env has it, and nothing of the app runs outside the desired table). Pure."""
    by_app = {}
    for d in desired:
        by_app.setdefault(d.app, []).append(d)
    out = set()
    for row in rows:
        mine = by_app.get(row.app, [])
        ids = {d.id for d in mine}
        url = url_of(row)
        if all(url in (d.spec.get("env") or {}).values() for d in mine) and observed_ids(row.app) <= ids:
            out.add((row.app, row.name))
    return out


class ServiceKeeper:
    """App services for one reconciler: the leader's :meth:`sync`, the loop's :meth:`env_for`, and the API's
    backups (any reconciler takes them: each has the settings and the backup folder)."""

    def __init__(self, store, servers, timings, actor, provisioners=None, clock=time.time):
        self.store, self.servers, self.timings, self.actor, self.clock = store, servers, timings, actor, clock
        self.provisioners = provisioners if provisioners is not None else \
            make_provisioners(servers, timings.service_timeout)
        self.backups = Backups(servers.backup_dir, servers.backup_margin) if servers.backup_dir else None
        self._checked_at = None          # monotonic time of the last look at the servers
        self._absent = set()             # (app, name) a look did not find
        self._not_before = {}            # (app, name) -> (monotonic time, failures in a row)
        self._said = {}                  # (app, name) -> the refusal last recorded as an event

    def types(self):
        """The service types this cluster can provision."""
        return frozenset(self.provisioners)

    def _service(self, row):
        return Service(row.app, row.name, row.type)

    def url(self, row):
        """The URL an app's instances reach the service of ``row`` with."""
        return self.provisioners[row.type].url(self._service(row), Credential(row.generation, row.password))

    # -- the loop's question ---------------------------------------------------------------
    def env_for(self, rec, rows):
        """The environment ``rec``'s instances get from its services (``rows``: its ServiceRecords), or None
        while one it asks for has no credential yet. An app without services gets {}."""
        services = rec.spec.get("services") or {}
        if not services:
            return {}
        by_name = {r.name: r for r in rows}
        urls = {}
        for name, svc in services.items():
            row = by_name.get(name)
            if row is None or row.type != svc["type"] or row.type not in self.provisioners or not row.password:
                return None
            urls[name] = (row.type, self.url(row))
        return service_env(rec.name, urls)

    # -- the leader's pass -------------------------------------------------------------------
    def _look(self, rows, now):
        """Every ``services_check`` s: which ready services are gone from their servers."""
        if self._checked_at is not None and now - self._checked_at < self.timings.services_check:
            return
        self._checked_at, absent = now, set()
        for row in rows:
            prov = self.provisioners.get(row.type)
            if row.state != READY or prov is None:
                continue
            try:
                if not prov.exists(self._service(row), Credential(row.generation, row.password)):
                    absent.add((row.app, row.name))
            except ServiceError as e:
                log.warning("could not look at service %s/%s: %s", row.app, row.name, e)
        self._absent = absent

    def sync(self, epoch, desired=tuple, observed_ids=lambda app: set(), now=None):
        """One pass as leader at ``epoch``; returns the names of the apps whose service env changed.
        ``desired()`` gives the desired rows (read only while a rotation waits for its instances). A
        cluster without service servers has nothing to do (apply refuses apps that ask for services)."""
        if not self.provisioners:
            return set()
        now = time.monotonic() if now is None else now
        apps, rows = self.store.list_apps(), self.store.list_services()
        self._look(rows, now)
        wanted, live = wanted_services(apps)
        by_key = {(r.app, r.name): r for r in rows}
        rotated = [r for r in rows if r.old_generations and r.type in self.provisioners]
        rolled = rolled_onto(rotated, desired() if rotated else (), observed_ids, self.url)
        todo = plan(wanted, [known_service(r, (r.app, r.name) not in self._absent) for r in rows], self.types(),
                    live, rolled)
        changed = set()
        steps = [(self._ensure, w, by_key.get((w.app, w.name))) for w in todo.ensure] + \
                [(self._record, w, by_key[(w.app, w.name)]) for w in todo.record] + \
                [(self._rotate, k, by_key[(k.app, k.name)]) for k in todo.rotate] + \
                [(self._retire, k, by_key[(k.app, k.name)]) for k in todo.retire] + \
                [(self._drop, k, by_key[(k.app, k.name)]) for k in todo.drop] + \
                [(self._retain, k, by_key[(k.app, k.name)]) for k in todo.retain]
        for step, item, row in steps:
            key = (item.app, item.name)
            if not self._due(key, now):
                continue
            try:
                if step(epoch, item, row, live):
                    changed.add(item.app)
                self._not_before.pop(key, None)
            except (ServiceError, OSError) as e:
                self._back_off(key, now)
                self._failed(epoch, item, e)
        for app, name, sentence in todo.refused:
            if self._said.get((app, name)) != sentence:
                self._said[(app, name)] = sentence
                self.store.add_event("app", app, "ServiceRefused", sentence, self.actor)
        self._scheduled_backups(epoch, apps, self.store.list_services(), now)
        return changed

    def _scheduled_backups(self, epoch, apps, rows, now):
        """Back up, once per slot of its app's ``backups.schedule``, each ready service whose slot is due;
        then let go what ``backups.keep`` lets go. A refused or failed backup waits for its backoff."""
        if self.backups is None or not any((r.spec.get("backups") or {}).get("schedule") for r in apps):
            return
        by_app, done = {}, {}
        for row in rows:
            by_app.setdefault(row.app, []).append(row)
        for b in self.store.list_service_backups():
            if b.slot:
                done[(b.app, b.service)] = max(done.get((b.app, b.service), 0), slot_time(b.slot))
        for rec in apps:
            policy = rec.spec.get("backups") or {}
            if rec.deleting or not policy.get("schedule"):
                continue
            for row in by_app.get(rec.name, ()):
                key = (row.app, row.name, "backup")
                if row.state != READY or row.type not in self.provisioners or not self._due(key, now):
                    continue
                slot, missed = due_slot(policy["schedule"], max(done.get((row.app, row.name), 0), row.created_at),
                                        self.clock())
                if slot is not None:
                    self._scheduled_backup(epoch, row, slot, missed, policy.get("keep") or {}, key, now)

    def _scheduled_backup(self, epoch, row, slot, missed, keep, key, now):
        """The backup of ``row`` for ``slot``, then the ``keep`` policy; a failure is an event and a backoff."""
        try:
            self.create_backup(row, reason=f"scheduled, slot {slot}" + (
                f"; {missed} earlier slot(s) missed" if missed else ""), slot=slot, epoch=epoch)
            self.prune(row, keep)
            self._not_before.pop(key, None)
        except Conflict as e:   # another leader's backup of the slot was recorded first: that one stands
            log.info("%s; this one was removed", e)
        except (ServiceError, OSError) as e:
            self._back_off(key, now)
            self.store.add_event("app", row.app, "ScheduledBackupFailed",
                                 f"scheduled backup of service {row.name} (slot {slot}): {e}", self.actor)

    def _due(self, key, now):
        """Whether ``key`` may be tried at ``now`` (it is not waiting for the backoff of a failure)."""
        return self._not_before.get(key, (0, 0))[0] <= now

    def _back_off(self, key, now):
        """``key`` failed at ``now``: its next try waits 2 s, doubling with each failure in a row, up to 5 min."""
        failures = self._not_before.get(key, (0, 0))[1] + 1
        self._not_before[key] = (now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)), failures)

    def _put(self, epoch, row, **changes):
        self.store.put_service(epoch, dataclasses.replace(row, **changes))

    def _failed(self, epoch, item, error):
        """Record that a step of ``item`` failed: its row's state and message (as stored now), and an event."""
        log.warning("service %s/%s: %s", item.app, item.name, error)
        row = {r.name: r for r in self.store.list_services(item.app)}.get(item.name)
        if row is not None:
            self._put(epoch, row, state=FAILED, message=str(error))
        self.store.add_event("app", item.app, "ServiceFailed", f"service {item.name}: {error}", self.actor)

    def _ensure(self, epoch, w, row, live):
        prov = self.provisioners[w.type]
        if row is None:
            row = ServiceRecord(app=w.app, name=w.name, type=w.type, server=without_password(
                self.servers.postgresql if w.type == "postgresql" else self.servers.redis), state=FAILED,
                generation=1, password=new_password(), on_delete=w.on_delete, message="being provisioned")
            self.store.put_service(epoch, row)   # the password is kept before the server hears of it
        started = time.monotonic()
        prov.ensure(self._service(row), Credential(row.generation, row.password))
        self._put(epoch, row, state=READY, on_delete=w.on_delete, message="", size=prov.size(self._service(row)))
        self._absent.discard((w.app, w.name))
        self.store.add_event("app", w.app, "ServiceReady",
                             f"{w.type} service {w.name} ready on {row.server} ({time.monotonic() - started:.2f} s)",
                             self.actor)
        return True

    def _record(self, epoch, w, row, live):
        self._put(epoch, row, on_delete=w.on_delete)
        return False

    def _rotate(self, epoch, k, row, live):
        fresh = Credential(row.generation + 1, new_password())
        self.provisioners[row.type].ensure(self._service(row), fresh)
        self._put(epoch, row, generation=fresh.generation, password=fresh.password, rotate_requested=False,
                  old_generations=tuple(row.old_generations) + (row.generation,))
        self.store.add_event("app", row.app, "CredentialsRotated",
                             f"service {row.name}: login {fresh.generation} made; the instances roll onto it, "
                             f"then login {row.generation} is dropped", self.actor)
        return True

    def _retire(self, epoch, k, row, live):
        for generation in row.old_generations:
            self.provisioners[row.type].retire(self._service(row), generation)
        self._put(epoch, row, old_generations=())
        self.store.add_event("app", row.app, "CredentialsRetired",
                             f"service {row.name}: login(s) {', '.join(map(str, row.old_generations))} dropped",
                             self.actor)
        return False

    def _retain(self, epoch, k, row, live):
        left_spec = row.app in live
        self._put(epoch, row, state=RETAINED, on_delete=RETAIN if left_spec else row.on_delete,
                  message="kept: " + ("no longer in the app's spec" if left_spec else "the app was deleted "
                                      "(onDelete: Retain)"))
        self.store.add_event("app", row.app, "ServiceRetained",
                             f"{row.type} service {row.name} and its backups are kept "
                             f"({'it left the spec' if left_spec else 'onDelete: Retain'})", self.actor)
        return False

    def _drop(self, epoch, k, row, live):
        if row.type not in self.provisioners:
            raise ServiceError(f"no {row.type} server is configured any more: service {row.name} cannot be dropped")
        backup = self.create_backup(row, reason="final backup before the drop")
        if not backup.verified:
            raise ServiceError(f"the final backup {backup.id} failed its verification "
                               f"({backup.manifest['verified']['reason']}); the data is kept")
        self.provisioners[row.type].drop(self._service(row))
        self.store.delete_service(epoch, row.app, row.name)
        self.store.add_event("app", row.app, "ServiceDropped",
                             f"{row.type} service {row.name} dropped (onDelete: Delete) after the verified backup "
                             f"{backup.id}", self.actor)
        return False

    # -- backups (any reconciler) -----------------------------------------------------------------
    def create_backup(self, row, reason="asked for", slot=None, epoch=None):
        """Take, verify and record a backup of the service of ``row``; BackupRefused (one sentence) when there
        is no backup folder or no room. A failed verification is an event. The backup of a schedule's
        ``slot`` is recorded by the leader at ``epoch``: a deposed one (Fenced), or a slot backed up
        already (Conflict), removes its files and raises."""
        if self.backups is None:
            raise BackupRefused("this cluster has no backup folder (setting services.backup_dir)")
        if row.type not in self.provisioners:
            raise BackupRefused(f"this cluster has no {row.type} server (setting services.{row.type})")
        b = self.backups.create(self.provisioners[row.type], self._service(row))
        m = b.manifest
        try:
            self.store.add_service_backup(ServiceBackupRecord(
                id=b.id, app=row.app, service=row.name, type=row.type, path=b.path, size=m["size"],
                sha256=m["sha256"], verified=b.verified, reason=m["verified"]["reason"], manifest=m,
                created_at=m["created_at"], slot=slot), epoch=epoch)
        except (Fenced, Conflict):
            self.backups.remove(b)
            raise
        said = (f"backup {b.id} of service {row.name} ({reason}): {m['size']} bytes in {m['seconds']['backup']:.2f} s, "
                f"verified in {m['seconds']['verify']:.2f} s: {m['verified']['reason']}")
        self.store.add_event("app", row.app, "BackupVerified" if b.verified else "BackupVerificationFailed",
                             said if b.verified else said.replace(": ", ": NOT verified: ", 1), self.actor)
        return b

    def prune(self, row, keep):
        """Remove the backups of the service of ``row`` that the ``keep`` policy lets go (files, manifests and
        records); returns their ids."""
        records = self.store.list_service_backups(row.app, row.name)
        gone = to_remove([(b.id, b.created_at, b.verified) for b in records], keep)
        if not gone or self.backups is None:
            return []
        by_id = {b.id: b for b in self.backups.list(row.app, row.name)}
        for bid in gone:
            if bid in by_id:
                self.backups.remove(by_id[bid])
            self.store.delete_service_backup(bid)
        self.store.add_event("app", row.app, "BackupsPruned",
                             f"{len(gone)} backup(s) of service {row.name} let go by the keep policy: {', '.join(gone)}",
                             self.actor)
        return gone

    def restore_to_new(self, row, backup_id, new_name):
        """Restore the PostgreSQL backup ``backup_id`` of the service of ``row`` into a new service ``new_name``
        of the same app, made for it and kept (``retained``) until the spec names it. Returns its row.
        Refused for Redis: its data lives under the app's one key prefix."""
        check_label(new_name, "service")
        if row.type != "postgresql":
            raise BackupRefused("--to-new restores PostgreSQL backups: a Redis service's keys live under its app's "
                                "one prefix, so restore it in place (--force)")
        if self.backups is None:
            raise BackupRefused("this cluster has no backup folder (setting services.backup_dir)")
        chosen = self.backups.find(row.app, backup_id)
        self.backups.check(chosen)
        fresh = dataclasses.replace(row, name=new_name, state=RETAINED, generation=1, password=new_password(),
                                    old_generations=(), rotate_requested=False, on_delete=RETAIN,
                                    message=f"restored from {backup_id}; name it in spec.services to use it")
        if not self.store.add_service(fresh):
            raise BackupRefused(f"app {row.app} has a service {new_name} already: pick a new name")
        self.provisioners[row.type].ensure(self._service(fresh), Credential(1, fresh.password))
        self.backups.restore(self.provisioners[row.type], chosen, self._service(fresh))
        self.store.add_event("app", row.app, "BackupRestored",
                             f"backup {backup_id} restored into a new service {new_name}", self.actor)
        return fresh

    def restore_backup(self, row, backup_id, force=False):
        """Restore the backup ``backup_id`` into the live service of ``row``: refused without ``force``;
        with it, a backup of the live data is taken (and verified) first. Returns that safety backup."""
        if self.backups is None:
            raise BackupRefused("this cluster has no backup folder (setting services.backup_dir)")
        chosen = self.backups.find(row.app, backup_id)
        if chosen.manifest.get("service") != row.name:
            raise BackupRefused(f"backup {backup_id} is of service {chosen.manifest.get('service')}, not {row.name}")
        self.backups.check(chosen)
        if not force:
            raise BackupRefused(f"restoring {backup_id} replaces the live data of {row.app}/{row.name}: "
                                f"add --force (a backup of the live data is taken first)")
        safety = self.create_backup(row, reason=f"taken before restoring {backup_id}")
        if not safety.verified:
            raise BackupRefused(f"the backup taken before the restore ({safety.id}) failed its verification "
                                f"({safety.manifest['verified']['reason']}); nothing was restored")
        self.backups.restore(self.provisioners[row.type], chosen, self._service(row))
        self.store.add_event("app", row.app, "BackupRestored",
                             f"service {row.name} restored from {backup_id} (the live data is in {safety.id})",
                             self.actor)
        return safety
