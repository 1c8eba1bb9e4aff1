"""The API of GitSources: list, show, delete, sync now, and the push webhook a git host calls.

Handlers return ``(status, body)`` like the rest of the API. The webhook does
not take the API token (a git host cannot be given it safely); it takes the
source's own webhook token: HMAC-SHA256 of the source's name under the
cluster's webhook key, a random secret kept in the store (made on first use,
never derived from the bus key), shown by ``GET /v1/gitsources/NAME`` to a
token that may sync. One source's webhook token tells nothing of another's. A git host
sends it as ``X-Corral-Token`` or ``X-Gitlab-Token``, or signs the body with it
as GitHub does (``X-Hub-Signature-256: sha256=<hmac>``).
"""
import hashlib
import hmac
import secrets

from corral.secrets import redact_urls
from reconciler import views
from reconciler.actor import actor
from reconciler.httpio import HttpError, read_body

MAX_WEBHOOK = 1 << 20   # bytes of a webhook body at most (413 beyond: its signature covers the whole body)


WEBHOOK_KEY = "gitsource-webhook-key"   # its name among the store's cluster secrets


def webhook_key(store):
    """The cluster's webhook key (hex), made and kept in the store on first use."""
    return store.cluster_secret(WEBHOOK_KEY, lambda: secrets.token_hex(32))


def webhook_token(key, name):
    """The webhook token of source ``name``: HMAC-SHA256 of the name under the webhook key ``key``, hex."""
    return hmac.new(key.encode(), f"gitsource-webhook/{name}".encode(), hashlib.sha256).hexdigest()


def webhook_allows(token, headers, body):
    """Whether a webhook request carries ``token`` (a header) or a GitHub signature of ``body`` made with it."""
    for header in ("HTTP_X_CORRAL_TOKEN", "HTTP_X_GITLAB_TOKEN"):
        given = headers.get(header)
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
    signature = headers.get("HTTP_X_HUB_SIGNATURE_256", "")
    if signature.startswith("sha256="):
        expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature[7:].encode(), expected.encode())
    return False


def gitsource_json(rec, key=None):
    """One GitSource as `get gitsources -o json` shows it (with its webhook when the webhook ``key`` is given)."""
    st = rec.status or {}
    apps = st.get("apps", [])
    out = {
        "name": rec.name, "labels": rec.labels, "generation": rec.generation,
        "spec": dict(rec.spec, url=redact_urls(rec.spec["url"])),
        "url": redact_urls(rec.spec["url"]), "branch": rec.spec["branch"], "path": rec.spec["path"],
        "fetchedCommit": st.get("fetchedCommit"), "syncedCommit": st.get("syncedCommit"),
        "lastError": redact_urls(st.get("lastError")), "lastErrorAt": views.iso(st.get("lastErrorAt")),
        "lastAttempt": views.iso(st.get("lastAttempt")), "lastSynced": views.iso(st.get("lastSynced")),
        "syncRequestedAt": views.iso(rec.sync_requested_at),
        "handledRequestAt": st.get("handledRequest"),  # the store's time of the last request synced
        "apps": apps, "synced": sum(1 for a in apps if a["state"] == "Synced"),
        "outOfSync": sum(1 for a in apps if a["state"] != "Synced"),
        "created_at": views.iso(rec.created_at),
    }
    if key:
        out["webhook"] = {"path": f"/v1/gitsources/{rec.name}/webhook", "token": webhook_token(key, rec.name)}
    return out


class GitSourceRoutes:
    """Route handlers over the store (which keeps the webhook key)."""

    def __init__(self, store, kick=lambda *apps: None):
        self.store = store
        self.kick = kick

    def routes(self):
        """``(method, pattern, handler, needs API token)`` rows for :class:`reconciler.api.Api`."""
        return [
            ("GET", r"/v1/gitsources", self.list, True),
            ("GET", r"/v1/gitsources/(?P<name>[^/]+)", self.get, True),
            ("DELETE", r"/v1/gitsources/(?P<name>[^/]+)", self.delete, True),
            ("POST", r"/v1/gitsources/(?P<name>[^/]+)/sync", self.sync, True),
            ("POST", r"/v1/gitsources/(?P<name>[^/]+)/webhook", self.webhook, False),
        ]

    def list(self, environ, query):
        return 200, [gitsource_json(r) for r in self.store.list_gitsources()]

    def get(self, environ, query, name):
        rec = self.store.get_gitsource(name)
        if rec is None:
            raise HttpError(404, f"gitsource {name!r} not found")
        # The webhook's token starts a sync: shown to a token that may sync (deploy and up), not to a read one.
        may_sync = environ.get("corral.role", "admin") != "read"
        return 200, gitsource_json(rec, webhook_key(self.store) if may_sync else None)

    def delete(self, environ, query, name):
        """Remove the source; ``?cascade=true`` deletes its apps too, else they stay, managed by hand."""
        cascade = query.get("cascade", "false")
        if cascade not in ("true", "false"):
            raise HttpError(400, f"cascade={cascade!r}: say true or false")
        apps = self.store.delete_gitsource(name, cascade == "true", actor=actor(environ))
        if apps is None:
            raise HttpError(404, f"gitsource {name!r} not found")
        if cascade == "true" and apps:
            self.kick(*apps)
        return 200, {"name": name, "cascade": cascade == "true", "apps": apps}

    def sync(self, environ, query, name):
        when = self.store.request_gitsource_sync(name)
        if when is None:
            raise HttpError(404, f"gitsource {name!r} not found")
        return 202, {"name": name, "requestedAt": when}

    def webhook(self, environ, query, name):
        body = read_body(environ, MAX_WEBHOOK)
        if not webhook_allows(webhook_token(webhook_key(self.store), name), environ, body):
            raise HttpError(401, f"missing or wrong webhook token for gitsource {name!r}")
        when = self.store.request_gitsource_sync(name)
        if when is None:
            raise HttpError(404, f"gitsource {name!r} not found")
        return 202, {"name": name, "requestedAt": when}


def gitsource_document(doc):
    """The store's form of a validated GitSource document."""
    return {"name": doc["metadata"]["name"], "labels": doc["metadata"].get("labels") or {}, "spec": doc["spec"]}
