"""The image id: a name for an image that is a hash of everything it is made of.

An image is the pair (virtualenv, app code). Two builds with the same inputs
produce interchangeable images, so the id is derived from the inputs alone,
before any work is done, and a finished image with that id is a cache hit.

The id is ``"sha256:" + sha256(canonical JSON of)``::

    {"format": 1,                          # FORMAT below; bump it when the
                                           # image layout or build recipe changes
     "python": "3.11.7",                   # the full version of the interpreter
                                           # that the venv is made from
     "platform": "linux-x86_64-cpython",   # sysconfig.get_platform() + "-" +
                                           # sys.implementation.name, of that interpreter
     "requirements": "six\\n",             # the exact requirement text given to pip
     "source_digest": "sha256:..."}        # the source archive's digest

Canonical JSON: keys sorted, separators ``(",", ":")``, ASCII only, UTF-8.

Requirement text is hashed as given, not resolved: ``six`` today and ``six``
next month are the same image even if a newer six was released. Pin versions
in the requirements to get a new image when a dependency moves. (Resolving
first is the seam for the cached, parallel installs of a later issue.)

This module is purely computational: no I/O.
"""
import dataclasses
import hashlib
import json

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class ImageInputs:
    """Everything an image is made of, as hashed into its id."""

    python: str          # full interpreter version, "3.11.7"
    platform: str        # "linux-x86_64-cpython"
    requirements: str    # exact requirement text given to pip ("" for none)
    source_digest: str   # "sha256:<hex>" of the source archive


def canonical_json(value):
    """The canonical UTF-8 bytes of a JSON value: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def image_id(inputs):
    """The id ``sha256:<hex>`` of the image built from ``inputs`` (an ImageInputs)."""
    doc = {
        "format": FORMAT,
        "python": inputs.python,
        "platform": inputs.platform,
        "requirements": inputs.requirements,
        "source_digest": inputs.source_digest,
    }
    return "sha256:" + hashlib.sha256(canonical_json(doc)).hexdigest()


def requirement_lines_text(requirements):
    """The requirement text for a list of requirement strings: one per line.

    ``["six", "requests==2.31"]`` -> ``"six\\nrequests==2.31\\n"``; an empty
    list -> ``""``. Order is kept (it is the user's text, not a resolved set).
    """
    return "".join(f"{line}\n" for line in requirements)
