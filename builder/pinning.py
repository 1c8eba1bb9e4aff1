"""The lock: a requirement set resolved once into exact versions and hashes.

Both install engines produce the same shape: one pin per distribution,
``name==version`` with its sha256 hashes, sorted by name. The lock's text is
stored with the build (``corral get builds -o yaml``), installed from with
``--require-hashes``, and its pins with their hashes key the environment
layer (:func:`content_keys`: two indexes serving one ``name==version`` with
other files make two layers, never one shared).

::

    asgiref==3.8.1 \\
        --hash=sha256:3e1e3ecc... \\
        --hash=sha256:c343bd80...
    django==4.2.16 \\
        --hash=sha256:...

Purely computational: no I/O.
"""
import dataclasses
import re

_NAME_NORMAL = re.compile(r"[-_.]+")


@dataclasses.dataclass(frozen=True)
class Pin:
    """One resolved distribution."""

    name: str       # normalized: lower case, runs of -_. as "-"
    version: str
    hashes: tuple   # "sha256:<hex>", sorted

    @property
    def requirement(self):
        """``name==version``."""
        return f"{self.name}=={self.version}"


def normalize_name(name):
    """A distribution name as PEP 503 compares it: ``Django_Foo`` -> ``django-foo``."""
    return _NAME_NORMAL.sub("-", name).lower()


def parse_requirements_lock(text):
    """The pins of a hashed requirements file (``uv pip compile --generate-hashes`` output).

    Raises ValueError naming the line for an entry that is not ``name==version``.
    """
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current.strip():
        logical.append(current)
    pins = []
    for entry in logical:
        words = entry.split()
        if words[0].startswith("-"):
            continue   # an option line (--index-url ...) carries no pin
        name, sep, version = words[0].partition("==")
        if not sep or not name or not version:
            raise ValueError(f"lock entry {words[0]!r} is not of the form name==version")
        name = name.split("[", 1)[0]
        hashes = sorted(w[len("--hash="):] for w in words[1:] if w.startswith("--hash="))
        pins.append(Pin(normalize_name(name), version, tuple(hashes)))
    return sorted(pins, key=lambda p: p.name)


def pins_from_pip_report(report):
    """The pins of pip's ``install --dry-run --report`` JSON (a dict)."""
    pins = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        hashes = (item.get("download_info", {}).get("archive_info", {}) or {}).get("hashes", {})
        found = (f"sha256:{hashes['sha256']}",) if "sha256" in hashes else ()
        pins.append(Pin(normalize_name(meta["name"]), meta["version"], found))
    return sorted(pins, key=lambda p: p.name)


def lock_text(pins):
    """The canonical text of a lock: pins sorted by name, hashes on continuation lines."""
    out = []
    for pin in sorted(pins, key=lambda p: p.name):
        if pin.hashes:
            out.append(pin.requirement + " \\\n" + " \\\n".join(f"    --hash={h}" for h in pin.hashes))
        else:
            out.append(pin.requirement)
    return "".join(line + "\n" for line in out)


def pin_set(pins):
    """The ``name==version`` strings of ``pins``, sorted: what an environment holds, as an installer
    compares it."""
    return sorted(p.requirement for p in pins)


def content_key(pin):
    """``name==version`` and the sha256 of every file the lock allows for it (uv lists every
    file of the release, pip the one it chose), or the requirement alone for a pin with no hash
    (a local folder or a VCS checkout, with pip)."""
    return f"{pin.requirement} {','.join(pin.hashes)}" if pin.hashes else pin.requirement


def content_keys(pins):
    """:func:`content_key` of each pin, sorted: what keys the environment layer."""
    return sorted(content_key(p) for p in pins)


def requirement_of(key):
    """The ``name==version`` of a :func:`content_key`."""
    return key.split(" ", 1)[0]
