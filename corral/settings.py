"""Timings and addresses that every daemon reads once, at its entry point.

Defaults are those of DESIGN.md. Tests shrink timings by passing a settings
file (YAML mapping of the field names below) with ``--settings``; nothing deep
inside the code reads the environment. The same file's ``services`` mapping
names the servers apps' databases live on (:class:`ServiceServers`).
"""
import dataclasses
import urllib.parse

import yaml


@dataclasses.dataclass(frozen=True)
class Timings:
    """Every duration the cluster runs on, in seconds."""

    heartbeat: float = 1.0          # agent -> reconcilers
    heartbeat_timeout: float = 5.0  # node becomes unreachable
    node_grace: float = 30.0        # node becomes lost; its instances are replaced
    lease_ttl: float = 10.0         # leader lease
    lease_renew: float = 2.0
    loop_interval: float = 1.0      # leader loop runs at least this often
    replay_window: float = 30.0     # wire: older messages are dropped
    build_poll: float = 0.5         # builder: how often an idle builder looks for work
    layer_url_ttl: float = 3600.0   # leader: a layer URL signed for a node is good this long (renewed at half)
    layer_copy_interval: float = 15.0   # builder: how often it copies the desired images' layers other builders made
    builder_layer_cache: float = 20 * 1024 ** 3   # builder: bytes of layers built here kept, least recently used pruned (0: no limit)
    builder_wheel_cache: float = 10 * 1024 ** 3   # builder: bytes of uv's cache and pip's wheelhouse kept, likewise
    watch_interval: float = 1.0     # API: how often the change stream (get -w, the dashboard) looks for changes
    watch_keepalive: float = 5.0    # API: a quiet change stream sends a keepalive this often (a gone client is noticed)
    gitops_tick: float = 1.0        # leader: how often it looks for GitSources due to sync
    git_timeout: float = 60.0       # one git command (fetch, export) is killed after this
    restart_backoff_first: float = 1.0    # agent: delay before the first restart, doubling per failure
    restart_backoff_max: float = 300.0    # agent: cap of the restart delay
    restart_backoff_reset: float = 600.0  # agent: an instance up this long starts its backoff over
    log_max_bytes: float = 10 * 1024 * 1024  # agent: an instance log is rotated past this size
    log_keep: float = 3                   # agent: log files kept per instance in all (output.log, .1 .. .N-1)
    log_retention: float = 7 * 24 * 3600  # agent: a forgotten instance's log folder is deleted this long after its last write
    event_retention: float = 7 * 24 * 3600  # leader: events older than this are deleted
    event_max: float = 100_000              # leader: at most this many events are kept, the newest
    prune_interval: float = 60.0            # leader: how often it deletes what the retentions let go
    services_check: float = 30.0    # leader: how often it checks that each ready service still exists on its server
    service_timeout: float = 300.0  # one statement on a service server; pg_dump/pg_restore get four times this


def _read(path):
    """The settings file's mapping ({} without a file)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: settings must be a mapping of name to seconds")
    return values


def load_timings(path=None, **overrides):
    """Timings from defaults, then the YAML file at ``path``, then ``overrides``.

    Unknown keys are an error naming the key and the file.
    """
    values = {k: v for k, v in _read(path).items() if k != "services"}
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(Timings)}
    for key in values:
        if key not in known:
            raise ValueError(f"{path or 'settings'}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
    return Timings(**{k: float(v) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class ServiceServers:
    """The servers apps' services are provisioned on (``services:`` in the settings file), and where their
    backups go. A server is an admin URL without a password (``postgresql://admin@db1:5432/postgres``,
    ``redis://r1:6379``); its password, if any, is the first line of the ``*_password_file``."""

    postgresql: str = None
    postgresql_password_file: str = None
    redis: str = None
    redis_password_file: str = None
    backup_dir: str = None          # default: <data dir>/backups under `corral up`, else none (backups refused)
    backup_margin: int = 64 * 1024 * 1024   # bytes kept free beyond the last backup's size

    def types(self):
        """The service types this cluster can provision."""
        return frozenset(kind for kind in ("postgresql", "redis") if getattr(self, kind))

    def password(self, kind):
        """The admin password of ``kind``'s server, read from its file now (None without a file)."""
        path = getattr(self, f"{kind}_password_file")
        if not path:
            return None
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n") or None


_SCHEMES = {"postgresql": ("postgresql", "postgres"), "redis": ("redis", "rediss")}


def load_services(path=None):
    """The :class:`ServiceServers` of the settings file at ``path``: ValueError (one sentence naming the file
    and the key) for an unknown key, a URL of the wrong scheme, or a password written into a URL."""
    values = _read(path).get("services") or {}
    where = path or "settings"
    if not isinstance(values, dict):
        raise ValueError(f"{where}: services must be a mapping (postgresql, redis, backup_dir, ...)")
    known = {f.name for f in dataclasses.fields(ServiceServers)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{where}: unknown setting services.{key} (known: {', '.join(sorted(known))})")
        if key in _SCHEMES and value is not None:
            parts = urllib.parse.urlsplit(str(value))
            if parts.scheme not in _SCHEMES[key]:
                raise ValueError(f"{where}: services.{key} must be a {_SCHEMES[key][0]}:// URL, not {value!r}")
            if parts.password is not None:
                raise ValueError(f"{where}: services.{key} carries a password; put it in "
                                 f"services.{key}_password_file instead")
    if "backup_margin" in values:
        values = {**values, "backup_margin": int(values["backup_margin"])}
    return ServiceServers(**values)
