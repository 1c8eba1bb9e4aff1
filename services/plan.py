"""What the leader must do to an app's services: a purely computational function with no side-effects.

:func:`plan` compares the services the apps ask for with the services the store
knows and returns buckets (as Nomad's reconciler does): ``ensure`` (create, or
repair what is not ready), ``rotate`` (a new credential was asked for),
``retire`` (old logins whose instances have moved on), ``drop`` (an app deleted
with ``onDelete: Delete``: a final verified backup, then drop), ``retain`` (an
app deleted, or a service taken out of its spec, with ``Retain``: the data stays,
the row says so) and ``refused`` (one sentence each).
"""
import dataclasses

from services.names import env_name, redis_prefix

TYPES = ("postgresql", "redis")
RETAIN, DELETE = "Retain", "Delete"
READY, RETAINED, FAILED = "ready", "retained", "failed"


@dataclasses.dataclass(frozen=True)
class Wanted:
    """A service an app's spec asks for; ``deleting``: the app is being deleted."""

    app: str
    name: str
    type: str
    on_delete: str = RETAIN
    deleting: bool = False


@dataclasses.dataclass(frozen=True)
class Known:
    """A service the store holds: its state, its current credential's generation, whether a rotation
    was asked for, and the older generations still to retire."""

    app: str
    name: str
    type: str
    state: str = READY
    generation: int = 1
    rotate: bool = False
    old_generations: tuple = ()


@dataclasses.dataclass(frozen=True)
class ServicePlan:
    ensure: tuple = ()
    rotate: tuple = ()
    retire: tuple = ()
    drop: tuple = ()
    retain: tuple = ()
    refused: tuple = ()   # (app, name, sentence)

    def empty(self):
        return not any(dataclasses.astuple(self))


def missing_server(app, services, servers):
    """The sentence that refuses ``app`` at apply when its ``services`` (name -> {type, ...}) ask for a
    type the cluster has no server for (``servers``: the configured types), else None."""
    for name in sorted(services or {}):
        kind = services[name]["type"]
        if kind not in servers:
            return (f"app {app} asks for a {kind} service ({name}), but this cluster has no {kind} server "
                    f"(setting services.{kind})")
    return None


def plan(wanted, known, servers, rolled=frozenset()):
    """The :class:`ServicePlan` from ``wanted`` (Wanted, of every app including those being deleted),
    ``known`` (Known, from the store), ``servers`` (the service types the cluster has) and ``rolled``
    (``(app, name)`` whose instances all run with the current credential: older logins may go)."""
    by_key = {(k.app, k.name): k for k in known}
    asked = {(w.app, w.name): w for w in wanted}
    out = {"ensure": [], "rotate": [], "retire": [], "drop": [], "retain": [], "refused": []}
    for key in sorted(asked):
        w, k = asked[key], by_key.get(key)
        if w.deleting:
            if k is None:
                continue
            if w.on_delete == DELETE:
                out["drop"].append(k)            # a final verified backup first: the shell's part
            elif k.state != RETAINED:
                out["retain"].append(k)
            continue
        if k is not None and k.type != w.type:
            out["refused"].append((w.app, w.name, f"service {w.app}/{w.name} is a {k.type} service and cannot "
                                                  f"become {w.type}: delete the app or give it another name"))
        elif w.type not in servers:
            out["refused"].append((w.app, w.name, missing_server(w.app, {w.name: {"type": w.type}}, servers)))
        elif k is None or k.state != READY:
            out["ensure"].append(w)
        elif k.rotate:
            out["rotate"].append(k)
        elif k.old_generations and key in rolled:
            out["retire"].append(k)
    for key in sorted(set(by_key) - set(asked)):
        if by_key[key].state != RETAINED:
            out["retain"].append(by_key[key])    # taken out of the spec: the data stays
    return ServicePlan(**{name: tuple(items) for name, items in out.items()})


def service_env(app, urls):
    """The environment an app's instances get from its services. ``urls``: name -> (type, url). Pure.

    Every service gives ``<NAME>_URL``; the first PostgreSQL service by name also gives
    ``DATABASE_URL``, the first Redis one ``REDIS_URL``, and any Redis ``REDIS_KEY_PREFIX``
    (``<app>:``: the only keys its user may touch)."""
    env = {}
    for name in sorted(urls):
        kind, url = urls[name]
        env[env_name(name)] = url
        if kind == "postgresql":
            env.setdefault("DATABASE_URL", url)
        elif kind == "redis":
            env.setdefault("REDIS_URL", url)
            env["REDIS_KEY_PREFIX"] = redis_prefix(app)
    return env
