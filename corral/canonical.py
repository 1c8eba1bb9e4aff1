"""The one text form of a JSON value, which corral stores, signs and hashes (pure).

Keys sorted, no spaces, NaN and infinities refused (JSON has neither). Two
alphabets, kept apart on purpose: UTF-8 as it is (the store's columns, the
bus's signed payloads) and ASCII with escapes (the hashes that name revisions,
agent specs and images: the ids a cluster already holds were taken over that
text, so changing it would rebuild and roll every app on upgrade).
"""
import json


def canonical_json(value, *, ascii_only=False) -> str:
    """``value`` as canonical JSON text; ``ascii_only`` escapes every non-ASCII character."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=False)


def canonical_bytes(value, *, ascii_only=False) -> bytes:
    """:func:`canonical_json` as UTF-8 bytes (what is signed or hashed)."""
    return canonical_json(value, ascii_only=ascii_only).encode("utf-8")
