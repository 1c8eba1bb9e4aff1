"""Each node its own key, on the reconciler's side: who a CurveZMQ key is, joins, and revocation.

:class:`NodeKeys` is what :class:`corral.wire.bus.BusServer` takes as ``identities``: a view of
the store's node keys (:meth:`corral.store.base.Store.list_node_keys`), read again every
``refresh`` seconds (:meth:`NodeKeys.run`), at once after a join or a revoke through this
reconciler, and when a key it does not know connects or speaks (at most once a second, so that a peer
making up keys cannot keep the store busy). A revoke through another reconciler therefore
reaches this one within ``refresh`` seconds; from then on the node's handshakes fail and every
message still on an open connection is refused and counted.

Routes (admin only; see ``reconciler/api.py:role_needed``)::

    POST /v1/node-tokens        {"expires": seconds}: a one-time join token (its text once)
    POST /v1/nodes/NAME/revoke  the node's key refused from now on
"""
import logging
import math
import time

from corral.store import StoreError
from corral.wire.credentials import name_refusal, new_join_token, node_sign_key, parse_join_token
from reconciler.actor import actor
from reconciler.httpio import HttpError, json_body

log = logging.getLogger(__name__)

DEFAULT_TOKEN_TTL = 3600.0
MAX_TOKEN_TTL = 7 * 86400.0
UNKNOWN_KEY_RELOAD = 1.0   # seconds between two reads of the store for keys this reconciler does not know


class NodeKeys:
    """The nodes' keys as this reconciler knows them (see the module docstring). ``server_public``:
    the bus's CurveZMQ public key, which join tokens carry; ``cluster_key`` derives signing keys."""

    def __init__(self, store, cluster_key, server_public, refresh=1.0, clock=time.monotonic):
        self.store, self.cluster_key, self.server_public = store, cluster_key, server_public
        self.refresh_every, self.clock = refresh, clock
        self._live = {}       # public key (z85 bytes) -> node name
        self._revoked = {}    # public key revoked -> the node it was
        self._records = {}    # node name -> NodeKeyRecord
        self._sign = {}       # node name -> its signing key, for live keys
        self._tried_at = -math.inf   # when the store was last read (or tried) for a key not known

    # -- what the bus asks -----------------------------------------------------
    def admits(self, public_key):
        """The ZAP answer for ``public_key`` (z85 bytes): False for a revoked node's key, else True (a
        key of no node may join, or speak with the cluster key)."""
        holder = self.holder(public_key)
        return holder is None or holder[1] is not None

    def holder(self, public_key):
        """``(node name, its signing key)`` of a node's live key, ``(name, None)`` of a revoked one, None
        for a key of no node. A key not known is looked for in the store again (a node that joined
        through another reconciler), at most every :data:`UNKNOWN_KEY_RELOAD` seconds."""
        name = self._live.get(public_key)
        if name is None and public_key not in self._revoked and self._may_reload():
            name = self._live.get(public_key)
        if name is not None:
            return name, self._sign[name]
        revoked = self._revoked.get(public_key)
        return None if revoked is None else (revoked, None)

    def _may_reload(self):
        """Read the store again for a key not known, unless that was tried within
        :data:`UNKNOWN_KEY_RELOAD` seconds; True when it was read. A store that cannot be read
        leaves the view as it is (logged), so the bus goes on as before."""
        now = self.clock()
        if now - self._tried_at < UNKNOWN_KEY_RELOAD:
            return False
        self._tried_at = now
        try:
            self.refresh()
        except StoreError as e:
            log.warning("could not read the node keys for a key not known here: %s", e)
            return False
        return True

    def sign_key(self, name):
        """Node ``name``'s signing key while its key holds, else None."""
        return self._sign.get(name)

    def refusal(self, name):
        """Why a message for ``name`` that came without a key of its own is refused: ``revoked``, or
        ``impersonation`` when the name holds a key (then no other connection speaks for it); else None."""
        rec = self._records.get(name)
        return None if rec is None else "revoked" if rec.revoked_at is not None else "impersonation"

    def status(self, name):
        """``own key``, ``revoked`` or ``cluster key`` (a node that never joined): how ``name`` is known."""
        rec = self._records.get(name)
        return "cluster key" if rec is None else "revoked" if rec.revoked_at is not None else "own key"

    def join(self, name, token_text, public_key):
        """A join request (the bus's thread): ``(True, {"name", "sign_key"})`` once the store spent the
        token and recorded ``public_key`` for ``name``, else ``(False, sentence)``."""
        refusal = name_refusal(name)
        if refusal:
            return False, refusal
        try:
            token = parse_join_token(token_text)
        except ValueError as e:
            return False, str(e)
        if token.server_public != self.server_public:
            return False, "the join token was made for other reconcilers (their bus key is not this one's)"
        try:
            refusal = self.store.redeem_join_token(token.id, token.secret_sha256(), name, public_key.decode("ascii"))
            if refusal:
                return False, refusal
            self.refresh()
        except StoreError as e:
            return False, f"the reconciler cannot reach its store ({e}); try again"
        log.info("node %s joined with its own key", name)
        return True, {"name": name, "sign_key": node_sign_key(self.cluster_key, name, public_key).hex()}

    # -- keeping the view ----------------------------------------------------------
    def refresh(self):
        """Read the node keys from the store again; returns the names revoked since the last read."""
        records = {r.name: r for r in self.store.list_node_keys()}
        live = {r.public_key.encode("ascii"): r.name for r in records.values()
                if r.public_key is not None and r.revoked_at is None}
        newly = sorted(n for n, r in records.items() if r.revoked_at is not None
                       and (n not in self._records or self._records[n].revoked_at is None))
        self._sign = {name: self._sign.get(name) if self._records.get(name) == records[name]
                      else node_sign_key(self.cluster_key, name, key) for key, name in live.items()}
        self._revoked = {r.public_key.encode("ascii"): r.name for r in records.values()
                         if r.public_key is not None and r.revoked_at is not None}
        self._live, self._records = live, records
        if newly:
            log.warning("node key(s) revoked: %s; their messages are refused from now on", ", ".join(newly))
        return newly

    def run(self, stop, on_error=log.warning):
        """Refresh every ``refresh`` seconds until ``stop()`` says so (a reconciler's duty)."""
        while not stop.sleep(self.refresh_every):
            try:
                self.refresh()
            except Exception as e:   # the store is down: keep what we know, try again
                on_error("could not read the node keys: %s", e)


class NodeKeyRoutes:
    """The API's routes of join tokens and revocation (see the module docstring)."""

    def __init__(self, store, keys):
        self.store, self.keys = store, keys

    def routes(self):
        """``(method, pattern, handler, needs_auth)`` entries for the API's route table."""
        return [
            ("POST", r"/v1/node-tokens", self.join_token, True),
            ("POST", r"/v1/nodes/(?P<name>[^/]+)/revoke", self.revoke, True),
        ]

    def join_token(self, environ, query):
        """A new one-time join token, valid ``expires`` seconds (default an hour, at most a week)."""
        if self.keys is None:
            raise HttpError(409, "this reconciler's bus is not encrypted (--bus-encryption off), so no node can "
                                 "join with a key of its own; run the reconcilers with --bus-encryption required")
        ttl = json_body(environ).get("expires", DEFAULT_TOKEN_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TOKEN_TTL:
            raise HttpError(400, f"expires must be a number of seconds above 0 and at most {MAX_TOKEN_TTL:.0f} "
                                 "(a week)")
        token = new_join_token(self.keys.server_public)
        expires_at = self.store.add_join_token(token.id, token.secret_sha256(), float(ttl), actor(environ))
        return 201, {"token": token.text(), "id": token.id, "expires_at": expires_at}

    def revoke(self, environ, query, name):
        """Revoke node ``name``'s key: refused from now on, here at once and on every reconciler within
        a refresh; its instances are replaced once it is lost, as a vanished node's."""
        if not self.store.revoke_node_key(name, actor(environ)):
            raise HttpError(404, f"node {name!r} not found")
        if self.keys is not None:
            self.keys.refresh()
        return 200, {"name": name, "revoked": True}
