"""Backups of an app's service, proven by restoring them, with a manifest beside each file.

Files live in ``<backup dir>/<app>/<service>/``: ``<id>.dump`` (mode 0600) and
``<id>.json``, its manifest (sizes, sha256, the facts of what was dumped, server
and tool versions, and the verification's verdict), also 0600, in folders of
0700. A backup is written under a temporary name (``O_EXCL``), verified by a
restore into a scratch copy, and only then renamed to its final name: a backup
that fails leaves nothing under a final name. While it is written and verified
its writer holds an ``flock`` on the temporary file: the next backup of the
service removes a temporary file nobody holds (its writer was killed) once it
is older than STALE_TEMP seconds. ``restore`` refuses a file whose
size or sha256 is not its manifest's.

The decisions (:func:`space_refusal`, :func:`backup_id`, :func:`manifest_refusal`)
are pure; the rest is the thin shell around a :class:`services.base.Provisioner`.
"""
import dataclasses
import datetime
import hashlib
import fcntl
import json
import os
import shutil
import time

from corral.private import fsync_dir, open_temp, tighten_dir, write_private
from services.base import ServiceError

MANIFEST_FORMAT = 1
MARGIN = 64 * 1024 * 1024   # bytes kept free beyond the expected size of a backup
STALE_TEMP = 60.0           # s: an unlocked temporary file this old was left by a backup that was killed


class BackupRefused(ServiceError):
    """A backup or restore corral will not do; the message says why, in one sentence."""


@dataclasses.dataclass(frozen=True)
class Backup:
    """A finished backup: its id, files and manifest (a dict, as written)."""

    id: str
    path: str
    manifest: dict

    @property
    def verified(self):
        return bool(self.manifest.get("verified", {}).get("ok"))


def space_refusal(folder, free, last_size, service_size, margin=MARGIN):
    """The sentence that refuses a backup into ``folder`` with ``free`` bytes free, or None. It needs the
    last backup's size (else the service's size on its server, an overestimate of a compressed dump) plus
    ``margin``. Pure. Example: last backup 40 MB, margin 64 MB, 90 MB free: refused (104 MB needed)."""
    expected = last_size if last_size is not None else (service_size or 0)
    needed = expected + margin
    if free >= needed:
        return None
    return (f"not enough free space in {folder} for a backup: {_mb(free)} free, {_mb(needed)} needed "
            f"({'the last backup' if last_size is not None else 'the data'} {_mb(expected)} plus a margin of "
            f"{_mb(margin)}); free some space or move the backup directory")


def _mb(n):
    return f"{n / 1e6:.1f} MB"


def backup_id(app, service, now, taken=()):
    """``<app>-<service>-<YYYYmmddTHHMMSSZ>`` at ``now`` (a UNIX time), with ``-2``, ``-3``... when
    ``taken`` holds it already. Pure."""
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{app}-{service}-{stamp}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def manifest_refusal(path, manifest, size, sha256):
    """The sentence that refuses to restore the file ``path`` of ``size`` bytes and ``sha256`` against its
    ``manifest``, or None. Pure."""
    if manifest.get("format") != MANIFEST_FORMAT:
        return f"{path}: its manifest is not of a format this corral reads ({manifest.get('format')!r})"
    if size != manifest.get("size"):
        return (f"{path} does not match its manifest: {size} bytes, the manifest says {manifest.get('size')}; "
                f"refusing to restore it")
    if sha256 != manifest.get("sha256"):
        return (f"{path} does not match its manifest: sha256 {sha256[:12]}..., the manifest says "
                f"{str(manifest.get('sha256'))[:12]}...; refusing to restore it")
    if not manifest.get("verified", {}).get("ok"):
        return (f"backup {manifest.get('id')} failed its verification "
                f"({manifest.get('verified', {}).get('reason', 'no verdict')}); refusing to restore it")
    return None


def file_digest(path):
    """``(size, sha256 hex)`` of the file at ``path``."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


class Backups:
    """The backup directory: take, verify, list and restore backups of services."""

    def __init__(self, folder, margin=MARGIN, clock=time.time, free_space=lambda p: shutil.disk_usage(p).free):
        self.folder, self.margin, self.clock, self.free_space = folder, margin, clock, free_space

    def _dir(self, service):
        path = os.path.join(self.folder, service.app, service.name)
        tighten_dir(self.folder)
        tighten_dir(os.path.join(self.folder, service.app))
        tighten_dir(path)
        return path

    def list(self, app, name=None):
        """Every backup of ``app`` (of its service ``name`` only, when given), oldest first."""
        found = []
        root = os.path.join(self.folder, app)
        names = [name] if name else (sorted(os.listdir(root)) if os.path.isdir(root) else [])
        for service in names:
            folder = os.path.join(root, service)
            for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                if entry.endswith(".json"):
                    with open(os.path.join(folder, entry), encoding="utf-8") as f:
                        manifest = json.load(f)
                    found.append(Backup(entry[:-5], os.path.join(folder, entry[:-5] + ".dump"), manifest))
        return sorted(found, key=lambda b: (b.manifest.get("created_at", 0), b.id))

    def find(self, app, backup):
        """The backup of ``app`` named ``backup``, or BackupRefused naming what is missing."""
        for b in self.list(app):
            if b.id == backup:
                return b
        raise BackupRefused(f"app {app} has no backup {backup} (see `corral backups list {app}`)")

    def create(self, provisioner, service):
        """Take a backup of ``service``, verify it by restoring it into a scratch copy, and keep it with its
        manifest. Refused (BackupRefused) when the folder has too little room; a failed dump leaves
        nothing behind; a failed verification is kept, its manifest says why."""
        folder = self._dir(service)
        previous = self.list(service.app, service.name)
        refusal = space_refusal(folder, self.free_space(folder), previous[-1].manifest["size"] if previous else None,
                                provisioner.size(service), self.margin)
        if refusal:
            raise BackupRefused(refusal)
        _sweep_temps(folder, time.time())
        started = self.clock()
        fd, tmp = open_temp(os.path.join(folder, "backup"))
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = os.dup(fd)      # the lock lives as long as one of the two: through the verification
        try:
            with os.fdopen(fd, "wb") as out:
                facts = provisioner.backup(service, out)
                out.flush()
                os.fsync(out.fileno())
            dumped = self.clock()
            verdict = provisioner.verify(service, tmp, facts)
            size, sha = file_digest(tmp)
            bid, final = _place(tmp, folder, service, started, {b.id for b in previous})
        finally:
            _unlink(tmp)
            os.close(held)
        fsync_dir(folder)
        manifest = {"format": MANIFEST_FORMAT, "id": bid, "app": service.app, "service": service.name,
                    "type": service.type, "file": os.path.basename(final), "size": size, "sha256": sha,
                    "created_at": started, "server_version": facts.pop("server_version", None),
                    "tool_version": facts.pop("tool_version", None), "facts": facts,
                    "verified": {"ok": verdict.ok, "reason": verdict.reason, "at": self.clock()},
                    "seconds": {"backup": round(dumped - started, 3), "verify": round(self.clock() - dumped, 3)}}
        write_private(os.path.join(folder, bid + ".json"), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return Backup(bid, final, manifest)

    def check(self, backup):
        """BackupRefused unless ``backup``'s file is there and matches its manifest."""
        if not os.path.exists(backup.path):
            raise BackupRefused(f"{backup.path} is missing: its manifest is there, its file is not")
        refusal = manifest_refusal(backup.path, backup.manifest, *file_digest(backup.path))
        if refusal:
            raise BackupRefused(refusal)

    def restore(self, provisioner, backup, target):
        """Restore ``backup`` into the service ``target`` (checked against its manifest first)."""
        if backup.manifest.get("type") != target.type:
            raise BackupRefused(f"backup {backup.id} is of a {backup.manifest.get('type')} service; "
                                f"{target} is {target.type}")
        self.check(backup)
        provisioner.restore(backup.path, target)

    def remove(self, backup):
        """Delete a backup's file and manifest (retention)."""
        _unlink(backup.path)
        _unlink(backup.path[:-5] + ".json")


def _place(tmp, folder, service, started, taken):
    """Give the finished file ``tmp`` its final name, ``(id, path)``: a hard link that never replaces a file
    (two backups of one second, taken by two reconcilers, get ``-2``); the caller unlinks ``tmp``."""
    while True:
        bid = backup_id(service.app, service.name, started, taken)
        final = os.path.join(folder, bid + ".dump")
        try:
            os.link(tmp, final)
            return bid, final
        except FileExistsError:
            taken = set(taken) | {bid}


def _sweep_temps(folder, now):
    """Remove from ``folder`` the temporary files of backups that were killed: nobody holds their lock, and
    they are older than STALE_TEMP (a file just opened may not be locked yet)."""
    for entry in os.listdir(folder):
        if not entry.startswith("backup.tmp-"):
            continue
        path = os.path.join(folder, entry)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime >= STALE_TEMP:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _unlink(path)
        except OSError:
            pass                # locked: a backup in progress
        finally:
            os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
