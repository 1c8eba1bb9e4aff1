"""The API of named tokens (`corral token`, `corral auth rotate`): admin only (reconciler/api.py role_needed).

Routes::

    GET    /v1/tokens               every token: name, role, times, state; never a secret nor its hash
    POST   /v1/tokens               {"name", "role", "expiresIn": seconds or null} -> 201 with "token", shown once
    POST   /v1/tokens/NAME/revoke   refused from the next request on, by every reconciler
    POST   /v1/tokens/NAME/rotate   a new secret for a live token (shown once); the old one is refused

The secret is made here (corral.auth.new_token) and only its sha256 is stored.
"""
import time

from corral.auth import MAX_EXPIRY, check_name, check_role, new_token, token_hash
from corral.store import ApiTokenRecord, Conflict
from reconciler import views
from reconciler.actor import actor
from reconciler.httpio import HttpError, json_body


def token_json(record, now):
    """One token as `corral token list -o json` shows it: never its secret nor its hash."""
    state = "revoked" if record.revoked_at is not None else (
        "expired" if record.expires_at is not None and now >= record.expires_at else "active")
    return {"name": record.name, "role": record.role, "state": state, "created": views.iso(record.created_at),
            "createdBy": record.created_by, "expires": views.iso(record.expires_at),
            "revoked": views.iso(record.revoked_at), "revokedBy": record.revoked_by,
            "lastUsed": views.iso(record.last_used_at)}


class TokenRoutes:
    """Route handlers over the store; ``credentials`` (reconciler.credentials.Credentials) says whether
    the bootstrap tokens are still on."""

    def __init__(self, store, credentials, clock=time.time):
        self.store = store
        self.credentials = credentials
        self.clock = clock

    def routes(self):
        """``(method, pattern, handler, needs the API token)`` rows for :class:`reconciler.api.Api`."""
        return [
            ("GET", r"/v1/tokens", self.list, True),
            ("POST", r"/v1/tokens", self.create, True),
            ("POST", r"/v1/tokens/(?P<name>[^/]+)/revoke", self.revoke, True),
            ("POST", r"/v1/tokens/(?P<name>[^/]+)/rotate", self.rotate, True),
        ]

    def list(self, environ, query):
        now = self.clock()
        return 200, [token_json(t, now) for t in self.store.list_api_tokens()]

    def create(self, environ, query):
        body = json_body(environ)
        try:
            name, role = check_name(body.get("name")), check_role(body.get("role"))
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        expires_in = body.get("expiresIn")
        if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)
                                       or not 0 < expires_in <= MAX_EXPIRY):
            raise HttpError(400, f"expiresIn must be a whole number of seconds from 1 to {MAX_EXPIRY}, or null")
        principal = environ.get("corral.principal")
        if principal is not None and principal.bootstrap and role != "admin" and not self.store.has_api_tokens():
            raise HttpError(409, "the first named token must be an admin one: once a cluster has a named token, its "
                                 "cluster-key tokens stop working, this one included (`corral auth rotate` makes "
                                 "all three)")
        token = new_token()
        record = ApiTokenRecord(name=name, token_hash=token_hash(token), role=role, created_at=0.0, created_by="",
                                expires_at=None if expires_in is None else self.clock() + expires_in)
        try:
            made = self.store.add_api_token(record, actor=actor(environ))
        except Conflict as e:
            raise HttpError(409, str(e)) from None
        self.credentials.named_token_made()
        return 201, dict(token_json(made, self.clock()), token=token)

    def revoke(self, environ, query, name):
        record = self.store.revoke_api_token(name, actor=actor(environ))
        if record is None:
            raise HttpError(404, f"token {name!r} not found")
        return 200, token_json(record, self.clock())

    def rotate(self, environ, query, name):
        token = new_token()
        try:
            record = self.store.rotate_api_token(name, token_hash(token), actor=actor(environ))
        except Conflict as e:
            raise HttpError(409, str(e)) from None
        if record is None:
            raise HttpError(404, f"token {name!r} not found")
        return 200, dict(token_json(record, self.clock()), token=token)

