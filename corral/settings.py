"""Timings and addresses that every daemon reads once, at its entry point.

Defaults are those of DESIGN.md. Tests shrink timings by passing a settings
file (YAML mapping of the field names below) with ``--settings``; nothing deep
inside the code reads the environment.
"""
import dataclasses

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


def load_timings(path=None, **overrides):
    """Timings from defaults, then the YAML file at ``path``, then ``overrides``.

    Unknown keys are an error naming the key and the file.
    """
    values = {}
    if path:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: settings must be a mapping of name to seconds")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(Timings)}
    for key in values:
        if key not in known:
            raise ValueError(f"{path or 'settings'}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
    return Timings(**{k: float(v) for k, v in values.items()})
