"""Ids of layers and images: names that are hashes of everything they are made of.

An image is two layers (see :mod:`corral.image_layout`). Each id is
``"sha256:" + sha256(canonical JSON)`` of its inputs::

    env layer   {"format": 2, "kind": "env",
                 "python": "3.11.7",                   # full version of the venv's interpreter
                 "platform": "linux-x86_64-cpython",   # sysconfig.get_platform() + "-" + implementation
                 "pins": ["django==4.2.16 sha256:..,sha256:..", ...],  # the lock's pins and the
                                                       # files each allows (builder.pinning.content_keys)
                 "own": "sha256:...",                  # only when a pin has no hash: the source's digest
                 "by": "corral_build-..."}             # only when builds run as their app's build user:
                                                       # its name (builder.buildusers), so no app gets a
                                                       # layer another app's build could have touched
    code layer  {"format": 2, "kind": "code",
                 "python": "3.11.7",                   # its bytecode is this interpreter's
                 "source_digest": "sha256:..."}
    image       {"format": 2, "env": <env id>, "code": <code id>}

Canonical JSON: keys sorted, separators ``(",", ":")``, ASCII only, UTF-8.

The environment is keyed by the resolved set, not by the requirement text:
two texts that resolve alike share one layer, and a change of code alone
reuses the environment untouched. The set names each file by its hash, so an
app whose requirements point at another index (or a direct URL) that serves
its own files for a ``name==version`` gets a layer of its own, never another
app's; a pin with no hash (a local folder) makes the layer the app's own.
Bump FORMAT when a layout or recipe changes.

This module is purely computational: no I/O.
"""
import hashlib

from builder import pinning
from corral.canonical import canonical_bytes

FORMAT = 2


def _sha(doc):
    return "sha256:" + hashlib.sha256(canonical_bytes(doc, ascii_only=True)).hexdigest()


def env_id(python, platform, keys, own=None, by=None):
    """The id of the environment layer for an interpreter and the content keys of a lock
    (:func:`builder.pinning.content_keys`); ``own``: the source digest of the app whose lock has a
    pin without a hash, whose layer is then its own; ``by``: the build identity that makes it
    (None: one shared by every app)."""
    doc = {"format": FORMAT, "kind": "env", "python": python, "platform": platform, "pins": sorted(keys)}
    if own is not None:
        doc["own"] = own
    if by is not None:
        doc["by"] = by
    return _sha(doc)


def env_id_of_lock(python, pins, source_digest, by=None):
    """:func:`env_id` of the lock ``pins`` (:class:`builder.pinning.Pin`) for ``python`` (an
    Interpreter), made by the app of ``source_digest`` as the build identity ``by``."""
    return env_id(python.version, python.platform, pinning.content_keys(pins),
                  own=source_digest if any(not p.hashes for p in pins) else None, by=by)


def code_id(python, source_digest):
    """The id of the code layer of a source (``sha256:...``) compiled for ``python``."""
    return _sha({"format": FORMAT, "kind": "code", "python": python, "source_digest": source_digest})


def image_id(env, code):
    """The id ``sha256:<hex>`` of the image made of the layers ``env`` and ``code``."""
    return _sha({"format": FORMAT, "env": env, "code": code})


def requirement_lines_text(requirements):
    """The requirement text for a list of requirement strings: one per line.

    ``["six", "requests==2.31"]`` -> ``"six\\nrequests==2.31\\n"``; an empty
    list -> ``""``.
    """
    return "".join(f"{line}\n" for line in requirements)


def resolution_key(python, platform, requirements_text, index):
    """The key under which a resolution of ``requirements_text`` is remembered.

    ``index`` is what the packages come from (the engine's index options):
    the same text against another index is resolved again.
    """
    return _sha({"format": FORMAT, "kind": "resolution", "python": python, "platform": platform,
                 "requirements": requirements_text, "index": list(index)})
