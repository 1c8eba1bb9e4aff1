"""What corral treats as secret in what it shows, and what it shows instead. Pure.

An app's ``env`` values are its secrets (database passwords, API keys): the
API's app JSON (``get apps -o json|yaml``), ``corral diff`` and the GitOps
drift events show each as ``<redacted sha256:1a2b3c4d>``, the first 8 hex
digits of the value's sha256, so that a change still shows without the value
(a short digest: a value as guessable as ``true`` can still be guessed from
it; the point is that no terminal, log or screenshot carries a secret).
The names stay visible. ``get ... --show-secrets`` asks for the values.

Credentials in URLs (``https://user:token@host/repo.git``, or a token as the
user name) are shown as ``https://<redacted>@host/repo.git`` wherever a git
URL is shown: GitSource JSON, sync errors, events and logs.
"""
import hashlib
import re

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")

SECRET_FIELDS = (("spec", "env"),)   # mappings whose values are secrets, by their path in an app


def redact(value):
    """What a secret ``value`` is shown as."""
    return f"<redacted sha256:{hashlib.sha256(str(value).encode('utf-8')).hexdigest()[:8]}>"


def is_secret(path):
    """Whether the field at ``path`` (a tuple of keys from the app's top) holds a secret value."""
    return any(len(path) > len(field) and tuple(path[:len(field)]) == field for field in SECRET_FIELDS)


def redact_spec(spec):
    """A copy of an app's ``spec`` with every secret value redacted (the input is not changed)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("env"), dict):
        return spec
    return {**spec, "env": {name: redact(value) for name, value in spec["env"].items()}}


def redact_urls(text):
    """``text`` with the user information (user names, passwords, tokens) of every URL in it redacted."""
    return _USERINFO.sub(r"\g<scheme><redacted>@", text) if isinstance(text, str) else text
