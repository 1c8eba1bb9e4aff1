"""The API's credentials: named tokens kept in the store by their hash, and the roles they carry.

Three roles, each allowed what the one below it is and more:

- ``read``: every GET (lists, describe, events, logs, the change stream);
- ``deploy``: also every write (apply, delete, scale, rollout undo, cordon,
  drain, sync), but not exec, backups, secret values or tokens;
- ``admin``: everything (``corral up`` writes one to the client config).

A named token (``corral token create``) is ``corral_`` and 43 characters of
:func:`secrets.token_urlsafe` (256 random bits); the store keeps its sha256
(:func:`token_hash`), never the token, and a request's token is looked up by
that hash. No timing tells an attacker anything: what varies with the input is
the lookup of a sha256 the attacker cannot aim.

The tokens derived from the cluster key (:func:`api_token`, one per role) are
the bootstrap of a cluster that has no named token yet (one installed by hand,
or upgraded from a release before named tokens): they are accepted only while
the store holds no named token at all, and never again once it holds one
(``corral auth rotate`` makes the first; rows are never deleted).
"""
import hashlib
import hmac
import re
import secrets
import time

ROLES = ("read", "deploy", "admin")   # each allowed what the ones before it are


def api_token(key, role="admin"):
    """The bootstrap token of ``role`` for cluster key ``key`` (bytes): accepted only while the store has no
    named token (see the module's docstring)."""
    label = b"corral api token v1" if role == "admin" else f"corral api {role} token v1".encode()
    if role not in ROLES:
        raise ValueError(f"no API role {role!r} (one of {', '.join(ROLES)})")
    return hmac.new(key, label, hashlib.sha256).hexdigest()


def role_tokens(key):
    """``{role: token}`` of every role for cluster key ``key``."""
    return {role: api_token(key, role) for role in ROLES}


def metrics_token(key):
    """The bearer token that a reconciler's ``/metrics`` accepts beside the API token, and nothing
    else does: what a Prometheus server holds reads counts, never the cluster's state or secrets."""
    return hmac.new(key, b"corral metrics token v1", hashlib.sha256).hexdigest()


def token_matches(expected, header):
    """Whether an ``Authorization`` header carries ``expected`` (constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def role_of(tokens, header):
    """The role whose token (``tokens``: ``{role: token}``) an ``Authorization`` header carries, else None.
    Every token is compared, so the time taken does not tell which one came close."""
    found = None
    for role, token in tokens.items():
        if token_matches(token, header):
            found = role
    return found


def allows(role, needed):
    """Whether ``role`` may do what needs ``needed`` (both of :data:`ROLES`)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


TOKEN_PREFIX = "corral_"
_NAMED = re.compile(r"corral_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_EXPIRY = re.compile(r"([0-9]+)([mhdw])")
_EXPIRY_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_EXPIRY = 10 * 366 * 86400   # seconds: ten years, past which "never" is the honest word


def new_token():
    """A fresh named token's secret: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token):
    """What the store keeps of a token: the sha256 of its text, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def bearer(header):
    """The token an ``Authorization`` header carries as ``Bearer``, else None."""
    scheme, _, given = (header or "").partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def is_named_token(token):
    """Whether ``token`` has the shape of a named token (else it is not looked up at all)."""
    return bool(_NAMED.fullmatch(token))


def check_name(name):
    """ValueError with one sentence unless ``name`` may name a token (lower case, digits, ``. _ -``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"token name {name!r} is not allowed: use 1 to 63 lower-case letters, digits, '.', '_' "
                         f"or '-', starting with a letter or digit")
    return name


def check_role(role):
    """ValueError with one sentence unless ``role`` is one of :data:`ROLES`."""
    if role not in ROLES:
        raise ValueError(f"no API role {role!r} (one of {', '.join(ROLES)})")
    return role


def parse_expiry(text):
    """Seconds for ``--expires`` (``90m``, ``12h``, ``30d``, ``2w``); ValueError with one sentence otherwise."""
    match = _EXPIRY.fullmatch(text or "")
    seconds = int(match.group(1)) * _EXPIRY_UNITS[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_EXPIRY:
        raise ValueError(f"--expires {text!r} is not a lifetime: say a whole number of minutes, hours, days or "
                         f"weeks, like 90m, 12h, 30d or 2w (at most ten years; leave it out for none)")
    return seconds


def refusal(record, now):
    """The sentence a stored token (corral.store.ApiTokenRecord) is refused with at ``now``, else None."""
    if record.revoked_at is not None:
        return f"API token {record.name!r} was revoked at {_iso(record.revoked_at)}; ask an admin for a new one"
    if record.expires_at is not None and now >= record.expires_at:
        return f"API token {record.name!r} expired at {_iso(record.expires_at)}; ask an admin for a new one"
    return None


def _iso(when):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
