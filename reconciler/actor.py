"""Who an API request says it comes from, as events record it. Pure.

The client names itself in ``X-Corral-Actor`` (``corral exec`` sends
``user@host``); that is a claim of whoever holds the token, not a proof, so
it is recorded as ``cli:<claim>``, cut to :data:`MAX_CLAIM` characters of a
plain set (letters, digits, ``@ . _ - + :``; anything else becomes ``?``),
so that no client writes control characters, fake lines or another actor's
name (``reconciler/r1``, ``gitsource/x``) into the audit trail.
"""
import re

MAX_CLAIM = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+:-]")


def actor(environ):
    """The actor of a request for its events: ``cli``, or ``cli:<claim>`` when it names one."""
    claim = _UNSAFE.sub("?", (environ.get("HTTP_X_CORRAL_ACTOR") or "").strip()[:MAX_CLAIM])
    return f"cli:{claim}" if claim else "cli"
