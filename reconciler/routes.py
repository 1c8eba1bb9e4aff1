"""The route table the routers serve, derived from desired and observed state. Pure.

An app claims the hosts and path prefixes of its ``spec.routes``; an app with
no ``routes`` and exactly one process with a port claims ``<app>.<cluster
domain>``, path ``/``. When two apps claim one host and path, the one created
first owns it: the later apply is refused with a sentence naming the owner
(:func:`route_refusal`, checked in the store's transaction, so that two applies
racing for one host cannot both pass).

A route's backends are the instances of its process that are, all at once:

- in the desired table (the leader removes a row the moment it decides to stop
  the instance, before the agent's drain begins, so the instance leaves the
  routers' tables while it still serves: ``drainPeriod`` covers the time the
  news takes to reach them);
- reported by their node as running and ready, with an address and a port;
- on a node that is ``ready`` or ``cordoned`` (not unreachable, not lost).
"""
from corral.hostnames import normalize_host, normalize_path
from corral.routetable import Backend, Route, conflicts
from reconciler.model import CORDONED, READY

SERVING_NODES = frozenset({READY, CORDONED})


def app_claims(name, spec, domain):
    """``[(host, path, process)]`` the app ``name`` with ``spec`` routes, normalised (see the
    module docstring for the default)."""
    ported = sorted(p for p, proc in spec["processes"].items() if proc.get("port"))
    routes = spec.get("routes")
    if not routes:
        if len(ported) != 1 or not domain:
            return []
        return [(normalize_host(f"{name}.{domain}"), "/", ported[0])]
    out = []
    for item in routes:
        host = normalize_host(item["host"])
        process = item.get("process") or (ported[0] if len(ported) == 1 else None)
        if host is not None and process is not None:
            out.append((host, normalize_path(item.get("path", "/")), process))
    return out


def apply_conflicts(stored, incoming, domain):
    """Sentences, one per host and path an app of ``incoming`` (``[(name, spec)]``, in apply
    order) claims that another app already owns: a stored app (``[(name, spec)]``, oldest
    first) that this apply does not replace, or an earlier app of the same apply."""
    replaced = {name for name, _ in incoming}
    claims = [(name, host, path) for name, spec in stored if name not in replaced
              for host, path, _ in app_claims(name, spec, domain)]
    claims += [(name, host, path) for name, spec in incoming for host, path, _ in app_claims(name, spec, domain)]
    return [f"app {second}: host {host} path {path} is already routed to app {first}; remove it from "
            f"{first}'s routes first, or choose another host or path"
            for host, path, first, second in conflicts(claims) if second in replaced]


def route_refusal(incoming, domain, gone=(), prefix=""):
    """A ``refuse`` for Store.apply_apps and Store.sync_gitsource: given every stored app, the
    sentence refusing ``incoming`` (app docs, in apply order) when one claims a host and path
    another app owns, else None. Apps being deleted, or named in ``gone`` (pruned by the same
    write), own nothing; ``prefix`` starts the sentence."""
    def refuse(stored):
        kept = [(a.name, a.spec) for a in sorted(stored, key=lambda a: (a.created_at, a.name))
                if not a.deleting and a.name not in gone]
        problems = apply_conflicts(kept, [(d["name"], d["spec"]) for d in incoming], domain)
        return prefix + "; ".join(problems) if problems else None
    return refuse


def ready_backends(desired, reports, node_states):
    """``{(app, process): (Backend, ...)}`` of every instance that may take requests (see the
    module docstring). ``desired``: DesiredInstance rows; ``reports``: ``{instance id: (node,
    reported instance)}``; ``node_states``: ``{node: state}``."""
    out = {}
    for row in desired:
        seen = reports.get(row.id)
        if seen is None:
            continue
        node, inst = seen
        if (node != row.node or node_states.get(node) not in SERVING_NODES or not inst.get("ready")
                or inst.get("state") != "running" or not inst.get("port") or not inst.get("address")):
            continue
        out.setdefault((row.app, row.process), []).append(Backend(row.id, inst["address"], int(inst["port"])))
    return {k: tuple(sorted(v, key=lambda b: b.id)) for k, v in out.items()}


def derive_routes(apps, desired, reports, node_states, domain):
    """The whole route table ``{(host, path): Route}``. ``apps``: AppRecords (one being deleted
    routes nothing); the first created owns a contested host and path."""
    backends = ready_backends(desired, reports, node_states)
    table = {}
    for app in sorted(apps, key=lambda a: (a.created_at, a.name)):
        if app.deleting:
            continue
        for host, path, process in app_claims(app.name, app.spec, domain):
            if (host, path) not in table:
                table[(host, path)] = Route(host, path, app.name, process, backends.get((app.name, process), ()))
    return table
