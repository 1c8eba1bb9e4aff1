"""The HTTP/JSON API that every reconciler serves (WSGI, run by eventlet.wsgi).

Every route but ``/healthz``, the dashboard's static files and the GitSources' webhooks needs a
bearer token (reconciler/credentials.py: a named token, checked against the store on every
request), and the token's role must allow it (:func:`role_needed`, corral/auth.py); ``/metrics``
takes the metrics token too (corral.auth.metrics_token). Errors are JSON
``{"error": "<one sentence>"}`` with a 4xx/5xx status. Apply is server-side
and idempotent: the store decides created / configured / unchanged, and an
unchanged app is not written at all.

Routes::

    GET    /healthz             liveness, leadership, versions (release, bus, store schema)
    GET    /metrics             Prometheus text format; any role's token or the metrics token (reconciler/metrics.py)
    POST   /v1/apply            {"documents": [{"doc": {...}, "source_digest": "sha256:..."}], "dryRun": bool}
                                (409 when an app claims a host and path another app routes)
    POST   /v1/diff             same body; per app the change as a unified diff
    GET    /v1/apps             GET /v1/apps/NAME        DELETE /v1/apps/NAME
    HEAD   /v1/sources/DIGEST   PUT /v1/sources/DIGEST   (gzip'd tar, digest checked)
    GET    /v1/instances[?app=NAME]
    GET    /v1/nodes            POST /v1/nodes/NAME/cordon|uncordon|drain
    POST   /v1/node-tokens      POST /v1/nodes/NAME/revoke   (admin; reconciler/node_keys.py)
    GET    /v1/apps/NAME/revisions   POST /v1/apps/NAME/undo   (reconciler/rollout_api.py)
    POST   /v1/apps/NAME/scale  {"process": P, "instances": N}
    GET    /v1/builds[?app=NAME]
    GET    /v1/events[?kind=K&name=N&limit=L]
    GET    /v1/backup           the control-plane state as a backup document
    GET    /v1/whoami           {"name": NAME, "role": "read" | "deploy" | "admin"}: the token sent
    GET    /v1/tokens           POST /v1/tokens   POST /v1/tokens/NAME/revoke|rotate   (reconciler/token_routes.py)
    GET    /v1/watch[?kinds=apps,instances,nodes,events]   server-sent changes (reconciler/watch.py)
    GET    /ui/...              the dashboard's files (reconciler/dashboard); it calls the routes above
    GET    /v1/routes           the route table this reconciler publishes to the routers
    GET    /v1/instances/ID/logs     POST /v1/exec[/SESSION/input|resize]   (reconciler/session_relay.py)
    GET    /v1/runs[?app=NAME]  GET /v1/runs/ID  POST /v1/apps/NAME/trigger|runs   (reconciler/runs_api.py)
    GET    /v1/gitsources[/NAME]  DELETE /v1/gitsources/NAME[?cascade=true]
    POST   /v1/gitsources/NAME/sync  POST /v1/gitsources/NAME/webhook
                                (reconciler/gitops/routes.py; apply takes GitSource documents too)
    GET    /v1/services[/APP/NAME]   GET /v1/backups   POST /v1/apps/NAME/backups[/ID/restore]
                                (reconciler/service_routes.py; an app asking for a service type the
                                cluster has no server for is refused at apply)
"""
import difflib
import hashlib
import json
import logging
import re
import time

import yaml

from corral import versions
from corral.auth import allows, token_matches
from corral.metrics import exposition_of
from corral.secrets import redact_spec
from corral.source import gunzip_source
from corral.spec import SpecError, validate_document
from corral.store import Conflict, StoreError, jsonable  # noqa: F401
from corral.store.schema import SCHEMA_VERSION
from reconciler import dashboard, views
from reconciler.actor import actor
from reconciler.credentials import Credentials, Refused
from corral.changes import parse_kinds
from reconciler.httpio import REASONS, HttpError, json_body, read_body  # noqa: F401 (HttpError: the API's)
from reconciler.gitops.routes import GitSourceRoutes, gitsource_document
from reconciler.metrics import route_label
from reconciler.node_keys import NodeKeyRoutes
from reconciler.rollout_api import RolloutRoutes
from reconciler.routes import route_refusal
from reconciler.runs_api import RunRoutes
from reconciler.session_relay import StreamRoutes
from reconciler.token_routes import TokenRoutes
from reconciler.watch import KEEPALIVE, ChangeFeed, EventStream, TooManyWatchers
from reconciler.service_routes import ServiceRoutes
from services.plan import missing_server

log = logging.getLogger(__name__)

MAX_SOURCE = 100 << 20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


METRICS = "metrics"   # a route's auth: the API token, or the metrics token (corral.auth.metrics_token)


class Exposition:
    """An answer that is not JSON: metrics in a Prometheus format."""

    def __init__(self, content_type, data):
        self.content_type = content_type
        self.data = data


class Api:
    """The WSGI application. ``state`` answers the questions only the daemon knows
    (observed view, node states, leadership); ``kick()`` wakes the loop. ``token`` is the
    bootstrap admin token; ``tokens`` (``{role: token}``, corral.auth.role_tokens) the bootstrap
    tokens of every role, when given: both accepted only while the store has no named token
    (reconciler/credentials.py). ``watch``: the change stream's seconds between reads, and between keepalives."""

    def __init__(self, store, state, token, kick, relay=None, tokens=None, watch=(1.0, KEEPALIVE), *, metrics=None,
                 metrics_token=None, route_table=list, cluster_domain="localhost", services=None, node_keys=None):
        self.store = store
        self.services = services   # a ServiceKeeper, or None: no app may then ask for services
        self.state = state
        self.credentials = Credentials(store, tokens or {"admin": token})
        self.kick = kick
        self.feed = ChangeFeed({"app": self._app_view, "instance": self._instance_view,
                                "node": self._node_view, "event": self._event_view}, watch[0])
        self.watch_keepalive = watch[1]
        self.metrics = metrics   # reconciler.metrics.ReconcilerMetrics, or None
        self.metrics_token = metrics_token
        self.route_table = route_table         # () -> the published route table (reconciler/route_feed.py)
        self.cluster_domain = cluster_domain   # an app's default host is <app>.<cluster domain>
        self.routes = [
            ("GET", r"/healthz", self.healthz, False),
            ("GET", r"/metrics", self.serve_metrics, METRICS),
            ("POST", r"/v1/apply", self.apply, True),
            ("POST", r"/v1/diff", self.diff, True),
            ("GET", r"/v1/apps", self.list_apps, True),
            ("GET", r"/v1/apps/(?P<name>[^/]+)", self.get_app, True),
            ("DELETE", r"/v1/apps/(?P<name>[^/]+)", self.delete_app, True),
            ("HEAD", r"/v1/sources/(?P<digest>[^/]+)", self.has_source, True),
            ("PUT", r"/v1/sources/(?P<digest>[^/]+)", self.put_source, True),
            ("GET", r"/v1/instances", self.list_instances, True),
            ("GET", r"/v1/nodes", self.list_nodes, True),
            ("POST", r"/v1/nodes/(?P<name>[^/]+)/(?P<verb>cordon|uncordon)", self.cordon, True),
            ("GET", r"/v1/builds", self.list_builds, True),
            ("GET", r"/v1/events", self.list_events, True),
            ("GET", r"/v1/backup", self.backup, True),
            ("POST", r"/v1/apps/(?P<name>[^/]+)/scale", self.scale, True),
            ("GET", r"/v1/whoami", self.whoami, True),
            ("GET", r"/v1/watch", self.watch, True),
            ("GET", r"/ui", dashboard.to_index, False),
            ("GET", r"/ui/(?P<name>[^/]*)", dashboard.serve, False),
            ("GET", r"/v1/routes", self.list_routes, True),
        ] + GitSourceRoutes(store, kick).routes() + RolloutRoutes(store, kick, self.cluster_domain).routes()
        self.routes += RunRoutes(store, kick).routes() + TokenRoutes(store, self.credentials).routes()
        self.routes += NodeKeyRoutes(store, node_keys).routes()
        if services is not None:
            self.routes += ServiceRoutes(store, services, kick).routes()
        if relay is not None:  # logs and exec (reconciler/session_relay.py)
            self.routes += StreamRoutes(store, state, relay, checker=self.checker).routes()

    # -- WSGI plumbing -------------------------------------------------------
    def __call__(self, environ, start_response):
        began = time.monotonic()
        status, body = self._dispatch(environ)
        if self.metrics is not None:
            self.metrics.answered(environ["REQUEST_METHOD"], route_label(environ.get("corral.route")), status,
                                  time.monotonic() - began)
        if isinstance(body, Exposition):
            start_response(f"{status} OK", [("Content-Type", body.content_type),
                                            ("Content-Length", str(len(body.data)))])
            return [body.data]
        if hasattr(body, "content_type"):  # streamed (each chunk written as soon as it is yielded), or a file
            environ["eventlet.minimum_write_chunk_size"] = 0
            start_response(f"{status} {REASONS.get(status, '')}",
                           [("Content-Type", body.content_type)] + list(getattr(body, "headers", [])))
            return body
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        start_response(f"{status} {REASONS.get(status, '')}", headers)
        return [payload] if environ["REQUEST_METHOD"] != "HEAD" else [b""]

    def _dispatch(self, environ):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        allowed = False
        for m, pattern, handler, auth in self.routes:
            match = re.fullmatch(pattern, path)
            if not match:
                continue
            allowed = True
            if m != method:
                continue
            query = _query(environ)
            environ["corral.route"] = pattern
            try:
                if auth and not (auth is METRICS and self._metrics_reader(environ.get("HTTP_AUTHORIZATION"))):
                    refused = self._authorize(environ, method, path, query)
                    if refused:
                        return refused
                return handler(environ, query, **match.groupdict())
            except HttpError as e:
                return e.status, {"error": e.message}
            except StoreError as e:
                return 503, {"error": f"the store is unavailable: {e}"}
            except Exception:  # a bug must not kill the server; it is logged with its traceback
                log.exception("%s %s failed", method, path)
                return 500, {"error": f"internal error while serving {method} {path}; see the reconciler's log"}
        if allowed:
            return 405, {"error": f"{method} is not allowed on {path}"}
        return 404, {"error": f"no such API route: {method} {path}"}

    def _authorize(self, environ, method, path, query):
        """``(401 or 403, error)`` when the request's token may not do this, else None with the token's
        holder in ``environ`` (``corral.principal``, ``corral.role``) for the handler and its events."""
        try:
            principal = self.credentials.identify(environ.get("HTTP_AUTHORIZATION"))
        except Refused as e:
            return 401, {"error": str(e)}
        needed = role_needed(method, path, query)
        if not allows(principal.role, needed):
            return 403, {"error": f"a {principal.role} token may not {method} {path}: that needs the {needed} role"}
        environ["corral.principal"], environ["corral.role"] = principal, principal.role
        return None

    def checker(self, environ):
        """``() -> sentence or None`` for an open stream of this request: whether its token is refused by now."""
        return self.credentials.checker(environ.get("corral.principal"))

    def _metrics_reader(self, header):
        """Whether ``header`` carries the metrics token (which opens ``/metrics`` and nothing else)."""
        return self.metrics_token is not None and token_matches(self.metrics_token, header)

    # -- handlers ------------------------------------------------------------
    def serve_metrics(self, environ, query):
        """The reconciler's metrics in the Prometheus text format (reconciler/metrics.py)."""
        if self.metrics is None:
            raise HttpError(404, "this API serves no metrics")
        content_type, data = exposition_of(self.metrics.registry, environ.get("HTTP_ACCEPT"))
        return 200, Exposition(content_type, data)

    def healthz(self, environ, query):
        """Liveness, and what this reconciler speaks: its release, the bus version, the store schema
        it migrates to and the one the store holds (as its lease last found it: no store call here)."""
        return 200, {"ok": True, **versions.local(SCHEMA_VERSION), "store_schema": self.state.lease.store_schema,
                     **self.state.health()}

    def _documents(self, environ):
        body = json_body(environ)
        docs = body.get("documents")
        if not isinstance(docs, list) or not docs:
            raise HttpError(400, "the request has no documents to apply")
        out, seen = [], set()
        for i, item in enumerate(docs):
            if not isinstance(item, dict) or not isinstance(item.get("doc"), dict):
                raise HttpError(400, f"document {i + 1} is not an object with a 'doc' field")
            try:
                doc = validate_document(item["doc"])
            except SpecError as e:
                raise HttpError(400, str(e))
            name = doc["metadata"]["name"]
            if (doc["kind"], name) in seen:
                raise HttpError(400, f"{doc['kind'].lower()} {name!r} is defined twice in one apply")
            seen.add((doc["kind"], name))
            if doc["kind"] == "GitSource":  # no source to upload: the leader fetches the repository
                out.append(dict(gitsource_document(doc), kind="GitSource"))
                continue
            digest = item.get("source_digest")
            if not isinstance(digest, str) or not _DIGEST.match(digest):
                raise HttpError(400, f"app {name!r}: source_digest must be sha256:<64 hex digits>")
            if not self.store.has_source(digest):
                raise HttpError(400, f"app {name!r}: source {digest[:19]}... was not uploaded (PUT /v1/sources/DIGEST first)")
            refusal = missing_server(name, doc["spec"].get("services"),
                                     self.services.types() if self.services is not None else frozenset())
            if refusal:
                raise HttpError(400, refusal)
            out.append({"name": name, "labels": doc["metadata"].get("labels") or {},
                        "spec": doc["spec"], "source_digest": digest})
        return out, bool(body.get("dryRun"))

    def apply(self, environ, query):
        docs, dry_run = self._documents(environ)
        apps = [d for d in docs if d.get("kind") != "GitSource"]
        try:
            results = self.store.apply_apps(apps, actor=actor(environ), dry_run=dry_run,
                                            gitsources=[d for d in docs if d.get("kind") == "GitSource"],
                                            refuse=route_refusal(apps, self.cluster_domain))
        except Conflict as e:   # a host and path another app routes
            raise HttpError(409, str(e)) from None
        if not dry_run and any(r.action != "unchanged" for r in results):
            self.kick(*[r.name for r in results if r.action != "unchanged" and r.kind == "App"])
        return 200, {"dryRun": dry_run, "results": [
            {"kind": r.kind, "name": r.name, "action": r.action, "generation": r.generation} for r in results]}

    def list_routes(self, environ, query):
        return 200, self.route_table()

    def diff(self, environ, query):
        docs, _ = self._documents(environ)
        out = []
        for d in docs:
            source = d.get("kind") == "GitSource"
            rec = (self.store.get_gitsource if source else self.store.get_app)(d["name"])
            old = "" if rec is None else _diffable(rec.labels, redact_spec(rec.spec),
                                                   None if source else rec.source_digest)
            new = _diffable(d["labels"], redact_spec(d["spec"]), d.get("source_digest"))
            text = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                f"live/{d['name']}", f"applied/{d['name']}"))
            action = "created" if rec is None else ("unchanged" if not text else "configured")
            if rec is not None and getattr(rec, "deleting", False):
                action = "configured"
            out.append({"name": d["name"], "action": action, "diff": text})
        return 200, {"diffs": out}

    def list_apps(self, environ, query):
        shown = _show_secrets(query)
        return 200, [views.app_json(r, shown) for r in self.store.list_apps()]

    def get_app(self, environ, query, name):
        rec = self.store.get_app(name)
        if rec is None:
            raise HttpError(404, f"app {name!r} not found")
        return 200, views.app_json(rec, _show_secrets(query))

    def delete_app(self, environ, query, name):
        rec = self.store.get_app(name)
        if not self.store.mark_app_deleting(name, actor=actor(environ)):
            raise HttpError(404, f"app {name!r} not found")
        self.kick(name)
        services = (rec.spec.get("services") or {}) if rec is not None else {}
        return 202, {"name": name, "deleting": True,
                     "services": [{"name": n, "type": s["type"], "onDelete": s.get("onDelete", "Retain")}
                                  for n, s in sorted(services.items())]}

    def has_source(self, environ, query, digest):
        return (200 if _DIGEST.match(digest) and self.store.has_source(digest) else 404), None

    def put_source(self, environ, query, digest):
        if not _DIGEST.match(digest):
            raise HttpError(400, f"{digest!r} is not a source digest (sha256:<64 hex digits>)")
        data = read_body(environ, MAX_SOURCE)
        try:
            tar = gunzip_source(data)   # bounded: a small body must not inflate without limit
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        actual = "sha256:" + hashlib.sha256(tar).hexdigest()
        if actual != digest:
            raise HttpError(400, f"the source archive's digest is {actual}, not {digest}")
        self.store.put_source(digest, data)
        return 201, {"digest": digest}

    def list_instances(self, environ, query):
        items = self.state.instances()
        if query.get("app"):
            items = [i for i in items if i["app"] == query["app"]]
        return 200, items

    def list_nodes(self, environ, query):
        return 200, self.state.nodes()

    def cordon(self, environ, query, name, verb):
        if not self.store.set_node_cordoned(name, verb == "cordon"):
            raise HttpError(404, f"node {name!r} not found")
        self.store.add_event("node", name, verb.capitalize() + "ed", f"node {name} {verb}ed", actor(environ))
        self.kick()
        return 200, {"name": name, "cordoned": verb == "cordon"}

    def list_builds(self, environ, query):
        return 200, [views.build_json(b) for b in self.store.list_builds(app=query.get("app") or None)]

    def backup(self, environ, query):
        """The control-plane state as one backup document (see corral/store/backup.py)."""
        from corral.store import backup
        return 200, backup.dump(self.store)

    def scale(self, environ, query, name):
        """Set one process's instance count (as `kubectl scale`): the app's spec as stored, that count
        changed, applied as a new generation."""
        body = json_body(environ)
        process, count = body.get("process"), body.get("instances")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise HttpError(400, "instances must be a whole number from 0 (as in an app's spec)")
        rec = self.store.get_app(name)
        if rec is None:
            raise HttpError(404, f"app {name!r} not found")
        if rec.deleting:
            raise HttpError(409, f"app {name!r} is being deleted; scaling it would bring it back")
        procs = rec.spec.get("processes", {})
        if not isinstance(process, str) or process not in procs:
            raise HttpError(400, f"app {name!r} has no process {process!r} (it has {', '.join(sorted(procs))})")
        spec = dict(rec.spec, processes=dict(procs, **{process: dict(procs[process], instances=count)}))
        doc = {"name": name, "labels": rec.labels, "spec": spec, "source_digest": rec.source_digest}
        if rec.owner:
            doc["owner"] = rec.owner
        result = self.store.apply_apps([doc], actor=f"{actor(environ)} (scale)")[0]
        if result.action != "unchanged":
            self.store.add_event("app", name, "Scaled", f"process {process} scaled to {count}", actor(environ))
            self.kick(name)
        return 200, {"name": name, "process": process, "instances": count, "action": result.action,
                     "generation": result.generation}

    def whoami(self, environ, query):
        """The name and role of the token the request carries (the dashboard shows only what it allows)."""
        return 200, {"name": environ["corral.principal"].name, "role": environ["corral.role"]}

    def watch(self, environ, query):
        try:
            kinds = parse_kinds(query.get("kinds", ""))
        except ValueError as e:
            raise HttpError(400, str(e))
        try:
            watcher, initial = self.feed.subscribe(kinds)
        except TooManyWatchers as e:
            raise HttpError(503, f"{e}; try again later")
        return 200, EventStream(self.feed, watcher, initial, self.watch_keepalive, refusal=self.checker(environ))

    # -- the change stream's views (corral/changes.py) -------------------
    def _app_view(self):
        return {r.name: views.app_json(r) for r in self.store.list_apps()}

    def _instance_view(self):
        return {i["id"]: i for i in self.state.instances()}

    def _node_view(self):
        return {n["name"]: n for n in self.state.nodes()}

    def _event_view(self):
        return {e.id: views.event_json(e) for e in self.store.list_events(limit=100)}

    def list_events(self, environ, query):
        try:
            limit = max(1, min(1000, int(query.get("limit", 100))))
        except ValueError:
            raise HttpError(400, "limit must be a whole number")
        events = self.store.list_events(kind=query.get("kind") or None, name=query.get("name") or None, limit=limit)
        return 200, [views.event_json(e) for e in events]


# Routes a role below admin may not take although their method only reads, or that read although they POST.
_ADMIN_READS = (r"/v1/backup",)
_READING_POSTS = (r"/v1/diff",)
_ONE_OFF = re.compile(r"/v1/apps/[^/]+/runs|/v1/runs/[^/]+/exit")   # `corral run`: a command of the caller's


_ADMIN_WRITES = re.compile(r"/v1/apps/[^/]+/backups/[^/]+/restore"   # replaces an app's live data
                           r"|/v1/node-tokens|/v1/nodes/[^/]+/revoke")   # lets a machine in, or cuts a node off


def role_needed(method, path, query):
    """The role a request needs (corral/auth.py): ``read`` to read (GET, HEAD, and a diff), ``admin`` for
    a backup, secret values, exec and a one-off run (both run code of the caller's inside an app),
    restoring an app's data from a backup and anything of tokens (even their list), ``deploy`` for any
    other write (a trigger runs the app's own command)."""
    if (path.startswith(("/v1/exec", "/v1/tokens")) or (method == "POST" and _ONE_OFF.fullmatch(path))
            or _ADMIN_WRITES.fullmatch(path)):
        return "admin"
    if method in ("GET", "HEAD"):
        return "admin" if path in _ADMIN_READS or _show_secrets(query) else "read"
    return "read" if path in _READING_POSTS else "deploy"


def _diffable(labels, spec, source_digest):
    return yaml.safe_dump({"metadata": {"labels": labels}, "spec": spec, "source": source_digest},
                          sort_keys=True, default_flow_style=False)


def _show_secrets(query):
    """Whether the request asked for secret values (``?showSecrets=true``) instead of redactions."""
    return query.get("showSecrets", "").lower() in ("1", "true", "yes")


def _query(environ):
    from urllib.parse import parse_qsl
    return dict(parse_qsl(environ.get("QUERY_STRING", "")))
