"""The API's bearer tokens, derived from the cluster key, one per role.

Deriving them (HMAC of a fixed label per role) means every reconciler agrees
on them with no second secret to distribute, and a leaked token does not leak
the key that signs bus messages. Three roles, each allowed what the one below
it is and more:

- ``read``: every GET (lists, describe, events, logs, the change stream);
- ``deploy``: also every write (apply, delete, scale, rollout undo, cordon,
  drain, sync), but not exec, backups or secret values;
- ``admin``: everything (``corral up`` writes this one to the client config).
"""
import hashlib
import hmac

ROLES = ("read", "deploy", "admin")   # each allowed what the ones before it are


def api_token(key, role="admin"):
    """The bearer token that the API accepts as ``role`` for cluster key ``key`` (bytes)."""
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
