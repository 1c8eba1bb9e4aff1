"""What the leader must do to an app's services: a purely computational function with no side-effects.

:func:`plan` compares the services the apps ask for with the services the store
knows and returns buckets (as Nomad's reconciler does): ``ensure`` (create, or
repair what is not ready), ``rotate`` (a new credential was asked for),
``retire`` (old logins whose instances have moved on), ``record`` (only the
row's ``onDelete`` changed), ``drop`` (an app deleted with ``onDelete: Delete``:
a final verified backup, then drop), ``retain`` (an app deleted with
``Retain``, or a service taken out of its spec: the data stays, the row says
so) and ``refused`` (one sentence each).
"""
import dataclasses

from services.names import env_name, redis_prefix

RETAIN, DELETE = "Retain", "Delete"
READY, RETAINED, FAILED = "ready", "retained", "failed"


@dataclasses.dataclass(frozen=True)
class Wanted:
    """A service the spec of a live app (one not being deleted) asks for."""

    app: str
    name: str
    type: str
    on_delete: str = RETAIN


@dataclasses.dataclass(frozen=True)
class Known:
    """A service the store holds: its state, what its app's spec said of deletion when it was recorded,
    its current credential's generation, whether a rotation was asked for, the older generations still
    to retire, and whether the last look at its server found it (``present``)."""

    app: str
    name: str
    type: str
    state: str = READY
    on_delete: str = RETAIN
    generation: int = 1
    rotate: bool = False
    old_generations: tuple = ()
    present: bool = True


@dataclasses.dataclass(frozen=True)
class ServicePlan:
    ensure: tuple = ()    # Wanted: create, or repair what is failed, retained or gone from its server
    record: tuple = ()    # Wanted: only what the row says changed (onDelete)
    rotate: tuple = ()    # Known: a new credential
    retire: tuple = ()    # Known: drop the old logins, every instance has moved on
    drop: tuple = ()      # Known: its app is deleted with onDelete: Delete (a final verified backup first)
    retain: tuple = ()    # Known: its app is deleted, or it left the spec: the data stays
    refused: tuple = ()   # (app, name, sentence)


def missing_server(app, services, servers):
    """The sentence that refuses ``app`` at apply when its ``services`` (name -> {type, ...}) ask for a
    type the cluster has no server for (``servers``: the configured types), else None."""
    for name in sorted(services or {}):
        kind = services[name]["type"]
        if kind not in servers:
            return (f"app {app} asks for a {kind} service ({name}), but this cluster has no {kind} server "
                    f"(setting services.{kind})")
    return None


def _wanted_step(w, k, servers, rolled):
    """The bucket and item of one wanted service ``w`` whose row is ``k`` (or None)."""
    if k is not None and k.type != w.type:
        return "refused", (w.app, w.name, f"service {w.app}/{w.name} is a {k.type} service and cannot become "
                                          f"{w.type}: delete the app or give it another name")
    if w.type not in servers:
        return "refused", (w.app, w.name, missing_server(w.app, {w.name: {"type": w.type}}, servers))
    if k is None or k.state != READY or not k.present:
        return "ensure", w
    if k.rotate:
        return "rotate", k
    if k.old_generations and (w.app, w.name) in rolled:
        return "retire", k
    if k.on_delete != w.on_delete:
        return "record", w
    return None, None


def plan(wanted, known, servers, live_apps, rolled=frozenset()):
    """The :class:`ServicePlan` from ``wanted`` (Wanted, of the live apps), ``known`` (Known, from the
    store), ``servers`` (the service types the cluster has), ``live_apps`` (names of the apps that exist
    and are not being deleted) and ``rolled`` (``(app, name)`` whose instances all run with the current
    credential: older logins may go). A service whose app is deleted or gone is dropped or kept by the
    ``onDelete`` its row recorded; one taken out of a live app's spec is kept."""
    by_key = {(k.app, k.name): k for k in known}
    asked = {(w.app, w.name): w for w in wanted}
    out = {field.name: [] for field in dataclasses.fields(ServicePlan)}
    for key in sorted(asked):
        bucket, item = _wanted_step(asked[key], by_key.get(key), servers, rolled)
        if bucket:
            out[bucket].append(item)
    for key in sorted(set(by_key) - set(asked)):
        k = by_key[key]
        if k.app not in live_apps and k.on_delete == DELETE:
            out["drop"].append(k)             # a final verified backup first: the shell's part
        elif k.state != RETAINED:
            out["retain"].append(k)
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


def _condition(type_, ok, reason, message):
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def service_conditions(services, states, last_backups):
    """The app conditions of its services. Pure.

    ``services``: the spec's ``services``; ``states``: name -> (state, message) of the rows the store
    holds; ``last_backups``: name -> (backup id, verified, reason) of each service's latest backup.
    ``ServicesReady`` says whether every service is provisioned; ``BackupVerified`` (once there is a
    backup) whether the latest backup of every service was proven by its restore."""
    missing = [n for n in sorted(services) if n not in states]
    failed = [n for n in sorted(services) if n in states and states[n][0] != READY]
    if failed:
        ready = _condition("ServicesReady", False, "Failed", f"service {failed[0]}: {states[failed[0]][1]}")
    elif missing:
        ready = _condition("ServicesReady", False, "Provisioning", f"waiting for {', '.join(missing)}")
    else:
        ready = _condition("ServicesReady", True, "Ready", f"{', '.join(sorted(services))} ready")
    out = [ready]
    backed = {n: last_backups[n] for n in sorted(services) if n in last_backups}
    if backed:
        bad = [(n, b) for n, b in backed.items() if not b[1]]
        if bad:
            name, (bid, _, reason) = bad[0]
            out.append(_condition("BackupVerified", False, "VerificationFailed",
                                  f"the latest backup of {name}, {bid}, did not restore as dumped: {reason}"))
        else:
            out.append(_condition("BackupVerified", True, "Verified",
                                  "latest backups restored and verified: " + ", ".join(b[0] for b in backed.values())))
    return out
