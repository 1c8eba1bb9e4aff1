"""The route table: which backends serve a request, by host and path; shared by the reconcilers
that publish it and the routers that serve it. Pure: no I/O.

A route is ``(host, path) -> app, process, backends``. Hosts are exact
(``shop.example.com``) or a wildcard (``*.example.com``, which matches any
name below ``example.com`` but not ``example.com`` itself; the wildcard with
the longest suffix wins). Within a host the longest path prefix wins, and a
prefix matches whole segments only: ``/api`` serves ``/api`` and ``/api/x``,
never ``/apix``.

The table travels from the reconcilers to the routers as a snapshot (every
route, with a sequence number) and then as deltas (``seq`` one more than the
last, routes set and routes removed). A delta whose ``base`` is not the
table's ``seq``, or that comes from another publisher ``stream`` (a restarted
reconciler), cannot be applied: :func:`apply_delta` answers :data:`RESYNC`
and the router asks for a new snapshot.
"""
import dataclasses

RESYNC = "resync"


@dataclasses.dataclass(frozen=True)
class Backend:
    """One ready instance a route may send requests to."""

    id: str
    address: str
    port: int


@dataclasses.dataclass(frozen=True)
class Route:
    """One entry of the table: ``host`` and ``path`` prefix to an app's process and its backends."""

    host: str
    path: str
    app: str
    process: str
    backends: tuple = ()

    @property
    def key(self):
        return (self.host, self.path)


def path_matches(prefix, path):
    """True when ``path`` (of a request, before ``?``) is under ``prefix`` by whole segments."""
    if prefix == "/":
        return True
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")


@dataclasses.dataclass(frozen=True)
class Table:
    """A whole route table as one publisher last sent it: ``stream`` names the publisher's
    run, ``seq`` the version. ``routes`` maps ``(host, path)`` to :class:`Route`."""

    stream: str = ""
    seq: int = 0
    routes: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        index = {}
        for route in self.routes.values():
            index.setdefault(route.host, []).append(route)
        for entries in index.values():
            entries.sort(key=lambda r: len(r.path), reverse=True)
        object.__setattr__(self, "_index", index)

    def match(self, host, path):
        """The route for a request to ``host`` (normalised) and ``path``, or None: the exact
        host's longest matching prefix, else the most specific wildcard's."""
        entries = self._index.get(host)
        if entries:
            for route in entries:
                if path_matches(route.path, path):
                    return route
        labels = host.split(".")
        for i in range(1, len(labels)):
            entries = self._index.get("*." + ".".join(labels[i:]))
            if entries:
                for route in entries:
                    if path_matches(route.path, path):
                        return route
        return None


def route_from_json(item):
    """A :class:`Route` from its wire form ``{host, path, app, process, backends: [{id, address, port}]}``."""
    return Route(host=item["host"], path=item["path"], app=item["app"], process=item["process"],
                 backends=tuple(Backend(b["id"], b["address"], int(b["port"])) for b in item["backends"]))


def route_to_json(route):
    """The wire form of ``route`` (see :func:`route_from_json`)."""
    return {"host": route.host, "path": route.path, "app": route.app, "process": route.process,
            "backends": [{"id": b.id, "address": b.address, "port": b.port} for b in route.backends]}


def from_snapshot(body):
    """The table a snapshot message body ``{stream, seq, routes}`` describes."""
    routes = {}
    for item in body["routes"]:
        route = route_from_json(item)
        routes[route.key] = route
    return Table(body["stream"], body["seq"], routes)


def diff(old, new):
    """The change from routes ``old`` to ``new`` (both ``{key: Route}``) as ``(set, remove)``:
    the routes that are new or differ, and the keys that are gone, each sorted."""
    changed = [new[k] for k in sorted(new) if old.get(k) != new[k]]
    removed = [k for k in sorted(old) if k not in new]
    return changed, removed


def delta_body(stream, seq, old, new):
    """The body of the delta message that takes a table at ``seq - 1`` with routes ``old``
    to ``seq`` with routes ``new``; None when nothing changed."""
    changed, removed = diff(old, new)
    if not changed and not removed:
        return None
    return {"kind": "delta", "stream": stream, "seq": seq, "base": seq - 1,
            "set": [route_to_json(r) for r in changed], "remove": [list(k) for k in removed]}


def apply_delta(table, body):
    """The table after delta ``body``, or :data:`RESYNC` when the delta cannot follow
    ``table``: another stream, or a ``base`` that is not ``table.seq`` (a lost message). A
    delta already applied (``seq <= table.seq`` in the same stream) leaves ``table`` as it is."""
    if body["stream"] != table.stream:
        return RESYNC
    if body["seq"] <= table.seq:
        return table
    if body["base"] != table.seq:
        return RESYNC
    routes = dict(table.routes)
    for host, path in body["remove"]:
        routes.pop((host, path), None)
    for item in body["set"]:
        route = route_from_json(item)
        routes[route.key] = route
    return Table(table.stream, body["seq"], routes)


def conflicts(claims):
    """Pairs of apps that claim one host and path: ``claims`` is ``[(app, host, path)]`` with
    host and path normalised; returns ``[(host, path, first_app, second_app)]`` in the
    order of ``claims`` (the first claimant is the owner)."""
    owner = {}
    out = []
    for app, host, path in claims:
        key = (host, path)
        if key in owner and owner[key] != app:
            out.append((host, path, owner[key], app))
        else:
            owner.setdefault(key, app)
    return out
