"""Who an API request's bearer token is: a named token of the store, or a bootstrap token.

Every request with a named token reads the token's row from the store (one
indexed SELECT by the sha256 of the token, no cache), so a revocation or an
expiry is refused by every reconciler from the next request on, whichever
reconciler wrote it. When the store does not answer, the request is refused
with 503 (its token cannot be checked): a revoked token is never let in.

The bootstrap tokens (corral.auth.api_token, derived from the cluster key)
are accepted only while the store holds no named token. Once this reconciler
has seen one, it never asks again (rows are never deleted); until then it
asks the store before the first bootstrap request is let in, then again at most
every :data:`ASK_EVERY` second beside the requests (a bootstrap token is refused
within a second of the first named token, made through any reconciler), and when
the store does not answer it goes by what it saw last: a request during an outage
waits for the store once (for its own work), not twice.
"""
import logging
import time
from typing import NamedTuple

import eventlet

from corral.auth import bearer, is_named_token, refusal as token_refusal, role_of, token_hash
from corral.store import StoreError

log = logging.getLogger(__name__)

TOUCH_EVERY = 60.0   # seconds: a token's last use is written at most this often by one reconciler
RECHECK = 1.0        # seconds at least between two checks of an open stream's token
UNANSWERED_QUIET = 5.0   # seconds the bootstrap question is not asked again after the store did not answer it
ASK_EVERY = 1.0          # seconds between two askings of it once answered (asked aside, the request not held)
WRONG = "missing or wrong API token (see CORRAL_TOKEN or the config corral up wrote)"
BOOTSTRAP_OFF = ("the cluster-key API tokens are off for good: this cluster has named tokens (`corral token "
                 "list`); use one of them (`corral auth rotate` writes new ones to the client config)")


class Principal(NamedTuple):
    """The holder of a request's token: its ``name`` (audit events say ``token/NAME``) and ``role``;
    ``bootstrap`` when it is a cluster-key token (named ``cluster-key/ROLE``)."""

    name: str
    role: str
    bootstrap: bool = False
    token_hash: str = ""   # a named token's sha256: what :meth:`Credentials.refusal` looks up again


class Refused(Exception):
    """A request's token opens nothing (401); the message says why in one sentence."""


class Credentials:
    """Checks bearer tokens against the store (named) and the cluster key's (``bootstrap``: ``{role: token}``)."""

    def __init__(self, store, bootstrap, clock=time.time):
        self.store = store
        self.bootstrap = dict(bootstrap)
        self.clock = clock
        self._named_seen = False
        self._quiet_until = 0.0   # monotonic time before which the store is not asked again (it did not answer)
        self._answered_at = None  # when the store last answered the bootstrap question
        self._asking = False

    def identify(self, header):
        """The :class:`Principal` of an ``Authorization`` header; :class:`Refused` with the reason when it
        opens nothing; StoreError when the store cannot say."""
        token = bearer(header)
        if token is None:
            raise Refused(WRONG)
        if is_named_token(token):
            return self._named(token)
        role = role_of(self.bootstrap, header)
        if role is None:
            raise Refused(WRONG)
        if self.named_tokens_exist():
            raise Refused(BOOTSTRAP_OFF)
        return Principal(f"cluster-key/{role}", role, bootstrap=True)

    def named_tokens_exist(self):
        """Whether the store holds a named token (so the bootstrap tokens are off); as last seen when the
        store does not answer."""
        if self._named_seen:
            return True
        now = time.monotonic()
        if self._answered_at is None:   # never answered since this reconciler started: ask before going on
            if now >= self._quiet_until:
                self._ask()
        elif now - self._answered_at >= ASK_EVERY and not self._asking:   # answered: asked again aside
            self._asking = True
            eventlet.spawn_n(self._ask)
        return self._named_seen

    def named_token_made(self):
        """A named token was just made through this reconciler: the cluster-key tokens are off from the
        next request on, here without asking the store (the others within :data:`ASK_EVERY`)."""
        self._named_seen = True

    def warm(self):
        """Ask the bootstrap question once, before the API serves (the reconciler's start), so that no
        request of a running reconciler waits for it."""
        if self.bootstrap and not self._named_seen:
            self._ask()

    def _ask(self):
        """Ask the store whether it holds a named token; when it does not answer, not again for
        :data:`UNANSWERED_QUIET` s (each request would wait for it, then for its own work)."""
        try:
            seen = self.store.has_api_tokens()
            self._named_seen = self._named_seen or seen   # never back: a token made meanwhile stays seen
            self._answered_at = time.monotonic()
        except StoreError as e:
            self._quiet_until = time.monotonic() + UNANSWERED_QUIET
            log.warning("cannot tell whether the store has named API tokens (%s); going by the last answer", e)
        except Exception:   # asked aside, in a green thread of its own: said here, never let loose
            self._quiet_until = time.monotonic() + UNANSWERED_QUIET
            log.exception("asking the store whether it has named API tokens failed; going by the last answer")
        finally:
            self._asking = False

    def _named(self, token):
        record = self.store.find_api_token(token_hash(token))
        if record is None:
            raise Refused(WRONG)
        self._named_seen = True
        now = self.clock()
        why = token_refusal(record, now)
        if why:
            raise Refused(why)
        if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
            try:
                self.store.touch_api_token(record.name, now)
            except StoreError as e:   # the request is still served: its token was checked
                log.warning("could not record the use of token %s: %s", record.name, e)
        return Principal(record.name, record.role, token_hash=record.token_hash)

    def checker(self, principal, every=RECHECK):
        """``() -> sentence or None``: :meth:`refusal` of ``principal``, asked of the store at most every
        ``every`` seconds (None between): what an open stream calls each time it wakes."""
        last = [time.monotonic()]

        def check():
            now = time.monotonic()
            if principal is None or now - last[0] < every:
                return None
            last[0] = now
            return self.refusal(principal)
        return check

    def refusal(self, principal):
        """The sentence ``principal``'s token is refused with now (revoked, expired, its secret rotated, the
        cluster-key tokens off), else None: what ends an open stream (changes, logs, exec). None when the store does not
        answer: the token was good when the stream opened, and the store cannot say otherwise."""
        try:
            if principal.bootstrap:
                return BOOTSTRAP_OFF if self.named_tokens_exist() else None
            record = self.store.find_api_token(principal.token_hash)
        except StoreError:
            return None
        if record is None:
            return f"API token {principal.name!r} has a new secret now; ask for it"
        return token_refusal(record, self.clock())
