"""The API's bearer token, derived from the cluster key.

Deriving it (HMAC of a fixed label) means every reconciler agrees on it with
no second secret to distribute, and a leaked token does not leak the key that
signs bus messages.
"""
import hashlib
import hmac


def api_token(key):
    """The bearer token that the API accepts for cluster key ``key`` (bytes)."""
    return hmac.new(key, b"corral api token v1", hashlib.sha256).hexdigest()


def token_matches(expected, header):
    """Whether an ``Authorization`` header carries ``expected`` (constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
