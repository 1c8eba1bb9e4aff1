"""API routes of rollouts and node maintenance (added to :class:`reconciler.api.Api`).

Routes::

    GET    /v1/apps/NAME/revisions         the rollout history, newest first
    POST   /v1/apps/NAME/undo              {"toRevision": N | null}: back to an earlier revision
    POST   /v1/nodes/NAME/drain            cordon, and move its instances off within each app's limits
"""
from corral.store import Conflict
from reconciler.actor import actor
from reconciler.httpio import HttpError, json_body
from reconciler.history import UndoError, pick_target, revision_json, undo_document
from reconciler.routes import route_refusal


class RolloutRoutes:
    """Handlers for rollout history and undo, and node drain. ``kick(*apps)`` wakes the loop."""

    def __init__(self, store, kick, cluster_domain="localhost"):
        self.store = store
        self.cluster_domain = cluster_domain  # an undo to routes another app owns now is refused
        self.kick = kick

    def routes(self):
        """``(method, pattern, handler, needs_auth)`` entries for the API's route table."""
        return [
            ("GET", r"/v1/apps/(?P<name>[^/]+)/revisions", self.history, True),
            ("POST", r"/v1/apps/(?P<name>[^/]+)/undo", self.undo, True),
            ("POST", r"/v1/nodes/(?P<name>[^/]+)/drain", self.drain, True),
        ]

    def _app(self, name):
        rec = self.store.get_app(name)
        if rec is None:
            raise HttpError(404, f"app {name!r} not found")
        return rec

    def history(self, environ, query, name):
        rec = self._app(name)
        current = (rec.status or {}).get("revision")
        return 200, [revision_json(r, current) for r in self.store.list_revisions(name)]

    def undo(self, environ, query, name):
        rec = self._app(name)
        body = json_body(environ)
        to = body.get("toRevision")
        if to is not None and (not isinstance(to, int) or isinstance(to, bool) or to < 1):
            raise HttpError(400, "toRevision must be a revision number (a whole number from 1)")
        try:
            target = pick_target(self.store.list_revisions(name), (rec.status or {}).get("revision"), to)
        except UndoError as e:
            raise HttpError(400, f"app {name!r}: {e}")
        if not self.store.has_source(target.source_digest):
            raise HttpError(409, f"app {name!r}: the source of revision {target.revision} is no longer stored")
        who = actor(environ)
        doc = undo_document(rec, target)
        try:
            result = self.store.apply_apps([doc], actor=f"{who} (rollout undo)",
                                           refuse=route_refusal([doc], self.cluster_domain))[0]
        except Conflict as e:
            raise HttpError(409, f"app {name!r}: revision {target.revision} cannot come back: {e}")
        self.store.add_event("app", name, "RolloutUndo",
                             f"rolled back to the spec of revision {target.revision} (generation {result.generation})",
                             who)
        self.kick(name)
        return 200, {"name": name, "toRevision": target.revision, "action": result.action,
                     "generation": result.generation}

    def drain(self, environ, query, name):
        if not self.store.set_node_cordoned(name, True, draining=True):
            raise HttpError(404, f"node {name!r} not found")
        self.store.add_event("node", name, "Draining",
                             f"node {name} cordoned; its instances move off within each app's maxUnavailable",
                             actor(environ))
        self.kick()
        return 200, {"name": name, "cordoned": True, "draining": True}

