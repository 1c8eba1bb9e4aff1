"""Who an API request comes from, as events record it. Pure.

The token decides: a request carrying a named token is ``token/NAME``
(a cluster-key bootstrap token: ``token/cluster-key/ROLE``), set by the API
once the token is checked (``corral.principal`` in the WSGI environ).

The client may add a claim of its own in ``X-Corral-Actor`` (``corral exec``
sends ``user@host``); that is a claim of whoever holds the token, not a
proof, so it is recorded after the token's name in brackets (``token/ci
(alice@laptop)``), cut to :data:`MAX_CLAIM` characters of a plain set
(letters, digits, ``@ . _ - + :``; anything else becomes ``?``), so that no
client writes control characters, fake lines or another actor's name
(``reconciler/r1``, ``gitsource/x``) into the audit trail. A request that
reached a handler without a checked token (only the tests call them so) is
``cli`` or ``cli:<claim>``.
"""
import re

MAX_CLAIM = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+:-]")


def actor(environ):
    """The actor of a request for its events: ``token/NAME`` with the client's claim in brackets, if any."""
    claim = _UNSAFE.sub("?", (environ.get("HTTP_X_CORRAL_ACTOR") or "").strip()[:MAX_CLAIM])
    principal = environ.get("corral.principal")
    if principal is None:
        return f"cli:{claim}" if claim else "cli"
    return f"token/{principal.name}" + (f" ({claim})" if claim else "")
