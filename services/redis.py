"""Redis for apps, on redis-py: an ACL user per credential, confined to the app's key prefix. A thin shell.

The user may touch keys ``<app>:*`` and channels ``<app>:*`` only, and runs every
command but the dangerous ones (``FLUSHALL``, ``CONFIG``, ``KEYS``, ``DEBUG``,
``SHUTDOWN``, ``ACL``, ``MONITOR``, ...: Redis's ``@dangerous``), those that leave
its database (``SELECT``, ``SWAPDB``, ``MOVE``), those that would show other apps'
key or channel names, which ACL key patterns do not filter (``SCAN``,
``RANDOMKEY``, ``DBSIZE``, ``PUBSUB``), and the script and function
administration that is global to the server (scripts run with the user's own
key rights, so ``EVAL``/``EVALSHA`` stay).

A backup is a file of ours: every key under the prefix with its ``DUMP``
payload and remaining TTL, read with ``SCAN`` (not one snapshot: a key written
during the backup may or may not be in it). Its facts are the key count and a
sha256 over the sorted (key, sha256 of payload) pairs; the verification
restores every key of the file under a scratch prefix, each to expire after
:data:`SCRATCH_TTL_MS` (so that the copy of a verifier killed before it
deleted it goes by itself), dumps those keys again and compares count and
digest, then deletes them.
"""
import hashlib
import struct

import redis

from services.base import Provisioner, ServiceError, Verification
from services.names import redis_login, redis_prefix, redis_scratch, redis_user, server_address

MAGIC = b"CORRAL-REDIS-BACKUP 1\n"
BATCH = 500
SCRATCH_TTL_MS = 6 * 3600 * 1000   # far longer than any verification; a killed one's copy expires
DENIED = ("-@dangerous", "-select", "-swapdb", "-move", "-scan", "-randomkey", "-dbsize", "-pubsub",
          "-@scripting", "+eval", "+evalsha", "+eval_ro", "+evalsha_ro", "+script|load", "+script|exists",
          "+fcall", "+fcall_ro")


def acl_rules(prefix, password):
    """The ``ACL SETUSER`` rules of an app's user: everything reset, then its password, its keys and
    channels, and the commands above. Pure."""
    return ("reset", "on", f">{password}", f"~{prefix}*", "resetchannels", f"&{prefix}*", "+@all") + DENIED


def digest(pairs):
    """``(count, sha256 hex)`` over ``(key, payload)`` pairs, in key order. Pure."""
    h = hashlib.sha256()
    count = 0
    for key, payload in sorted(pairs):
        h.update(struct.pack(">I", len(key)) + key + hashlib.sha256(payload).digest())
        count += 1
    return count, h.hexdigest()


def write_record(out, key, payload, pttl):
    out.write(struct.pack(">I", len(key)) + key + struct.pack(">I", len(payload)) + payload + struct.pack(">q", pttl))


def read_records(path):
    """``[(key, payload, pttl)]`` of a backup file; ServiceError when it is not one of ours or is cut short."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise ServiceError(f"{path} is not a corral Redis backup")
    records, at = [], len(MAGIC)
    try:
        while at < len(data):
            (n,) = struct.unpack_from(">I", data, at)
            key = data[at + 4:at + 4 + n]
            at += 4 + n
            (m,) = struct.unpack_from(">I", data, at)
            payload = data[at + 4:at + 4 + m]
            at += 4 + m
            (pttl,) = struct.unpack_from(">q", data, at)
            at += 8
            if len(key) != n or len(payload) != m:
                raise struct.error("short")
            records.append((key, payload, pttl))
    except struct.error:
        raise ServiceError(f"{path} is cut short after {len(records)} keys") from None
    return records


def answers(url, timeout=2):
    """Whether a Redis server answers at ``url`` as a user that may manage ACL users."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping()) and client.execute_command("ACL", "WHOAMI") is not None
    except redis.RedisError:
        return False


class RedisProvisioner(Provisioner):
    """Key prefixes and ACL users on one Redis server reached as an admin (a user that may run ACL)."""

    type = "redis"

    def __init__(self, url, password=None, timeout=60):
        self.url_, self.host, self.port = url, *server_address(url)
        self.port = self.port or 6379
        self.client = redis.Redis.from_url(url, password=password, socket_timeout=timeout, socket_connect_timeout=10)

    def _call(self, *args):
        try:
            return self.client.execute_command(*args)
        except redis.RedisError as e:
            raise ServiceError(f"Redis at {self.host}:{self.port} refused {args[0]} {args[1] if len(args) > 1 else ''}"
                               f": {e}".replace(" :", ":")) from None

    def _keys(self, prefix):
        """Every key under ``prefix`` (bytes), by SCAN."""
        try:
            return list(self.client.scan_iter(match=prefix.replace("\\", "\\\\") + "*", count=1000))
        except redis.RedisError as e:
            raise ServiceError(f"Redis at {self.host}:{self.port} refused SCAN: {e}") from None

    def _delete(self, keys):
        for i in range(0, len(keys), BATCH):
            self._call("UNLINK", *keys[i:i + BATCH])

    # -- provisioning ---------------------------------------------------------------------------------
    def ensure(self, service, credential):
        self._call("ACL", "SETUSER", redis_login(service.app, service.name, credential.generation),
                   *acl_rules(redis_prefix(service.app), credential.password))

    def exists(self, service, credential):
        return self._call("ACL", "GETUSER", redis_login(service.app, service.name, credential.generation)) is not None

    def url(self, service, credential):
        return (f"redis://{redis_login(service.app, service.name, credential.generation)}:{credential.password}"
                f"@{self.host}:{self.port}/0")

    def retire(self, service, generation):
        self._call("ACL", "DELUSER", redis_login(service.app, service.name, generation))

    def drop(self, service):
        self._delete(self._keys(redis_prefix(service.app)))
        mine = redis_user(service.app, service.name) + "."
        users = [u.decode() if isinstance(u, bytes) else u for u in self._call("ACL", "USERS")]
        gone = [u for u in users if u.startswith(mine) and u[len(mine):].isdigit()]
        if gone:
            self._call("ACL", "DELUSER", *gone)

    def size(self, service):
        """The memory its keys take, from ``MEMORY USAGE`` of at most ``BATCH`` of them, scaled to them all."""
        keys = self._keys(redis_prefix(service.app))
        if not keys:
            return 0
        sample = keys[::max(1, len(keys) // BATCH)]
        pipe = self.client.pipeline(transaction=False)
        for key in sample:
            pipe.memory_usage(key, samples=0)
        return int(sum(n or 0 for n in pipe.execute()) * len(keys) / len(sample))

    def version(self):
        try:
            return self.client.info("server")["redis_version"]
        except redis.RedisError as e:
            raise ServiceError(f"Redis at {self.host}:{self.port} refused INFO: {e}") from None

    # -- backups ------------------------------------------------------------------------------------
    def _dump(self, keys):
        """``[(key, payload, pttl)]`` of ``keys`` (a key gone meanwhile is left out)."""
        out = []
        for i in range(0, len(keys), BATCH):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[i:i + BATCH]:
                pipe.dump(key)
                pipe.pttl(key)
            got = pipe.execute()
            out += [(key, got[2 * j], got[2 * j + 1]) for j, key in enumerate(keys[i:i + BATCH])
                    if got[2 * j] is not None]
        return out

    def backup(self, service, out):
        prefix = redis_prefix(service.app).encode()
        records = self._dump(self._keys(redis_prefix(service.app)))
        out.write(MAGIC)
        for key, payload, pttl in sorted(records):
            write_record(out, key[len(prefix):], payload, max(pttl, 0))
        keys, sha = digest((key[len(prefix):], payload) for key, payload, _ in records)
        return {"keys": keys, "digest": sha, "server_version": self.version(), "tool_version": "corral redis backup 1"}

    def _restore_records(self, records, prefix, ttl_ms=None):
        """RESTORE ``records`` under ``prefix``, each with its own TTL, or ``ttl_ms`` when given."""
        for i in range(0, len(records), BATCH):
            pipe = self.client.pipeline(transaction=False)
            for key, payload, pttl in records[i:i + BATCH]:
                pipe.restore(prefix + key, pttl if ttl_ms is None else ttl_ms, payload, replace=True)
            try:
                pipe.execute()
            except redis.RedisError as e:
                raise ServiceError(f"Redis refused RESTORE: {e}") from None

    def verify(self, service, path, facts):
        scratch = redis_scratch().encode()
        restored = []
        try:
            records = read_records(path)
            restored = [scratch + key for key, _, _ in records]
            self._restore_records(records, scratch, ttl_ms=SCRATCH_TTL_MS)
            again = self._dump(restored)     # the keys restored, read back; one missing is left out
            count, sha = digest((key[len(scratch):], payload) for key, payload, _ in again)
        except ServiceError as e:
            return Verification(False, f"restoring it under a scratch prefix failed: {e}")
        finally:
            self._delete(restored)
        if count != facts.get("keys"):
            return Verification(False, f"{facts.get('keys')} keys were dumped, {count} restored")
        if sha != facts.get("digest"):
            return Verification(False, "the digest of the restored keys differs from the dumped ones")
        return Verification(True, f"restored under a scratch prefix: {count} keys, count and digest agree",
                            {"keys": count, "digest": sha})

    def restore(self, path, service):
        records = read_records(path)
        prefix = redis_prefix(service.app)
        self._delete(self._keys(prefix))
        self._restore_records(records, prefix.encode())
