"""What each part of corral speaks, and which mixes of versions are supported.

Three numbers say what a peer can understand:

- the release, ``corral.__version__`` (``MAJOR.MINOR.PATCH``, PEP 440): what
  ``corral version`` prints for the client and every daemon it reaches;
- the bus envelope's version, :data:`corral.wire.envelope.VERSION` (the ``v``
  of every signed message; a change of it is a new major release);
- the store's schema version, ``corral.store.schema.SCHEMA_VERSION`` (the number of migrations).

The skew guarantee: daemons one minor release apart work together (a
reconciler of 0.3 with agents of 0.2, during an upgrade). A message field
that a newer peer adds is ignored by an older one (schemas/wire allow unknown
fields, bounded in number and size); store migrations within one minor
release only add (tables, and columns that may be NULL or have a default),
so an older reconciler still reads and writes a newer store, and it never
leads one (reconciler/leader.py): the newer reconcilers do.
"""
import re

import corral

#: The bus envelope's version (the ``v`` of every message); corral/wire/envelope.py speaks it.
BUS = 1

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def release(text):
    """``(major, minor)`` of a version string like ``0.2.0`` or ``0.2.0.dev0``; None when it is not one."""
    match = _RELEASE.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def skew(mine, theirs):
    """Whether a peer of version ``theirs`` is within the supported skew of ``mine``: the same major
    release and at most one minor release apart. Pure.

    0.2.0 and 0.1.3: yes (one minor apart); 0.3.0 and 0.1.0: no (two); 1.0.0 and 0.9.0: no (majors
    differ); an unparsable version: no.
    """
    a, b = release(mine), release(theirs)
    return a is not None and b is not None and a[0] == b[0] and abs(a[1] - b[1]) <= 1


def older_than(version, since):
    """Whether a peer that says ``version`` is known to be of a release before ``since`` (``"0.2"``),
    and so does not read what that release added to a message. An unknown or unparsable version is
    not known to be older. Pure.

    ``"0.1.0"`` is older than ``"0.2"``; ``"0.2.0.dev0"`` and ``None`` are not."""
    mine, theirs = release(since), release(version)
    return mine is not None and theirs is not None and theirs < mine


def local(schema):
    """This process's versions: ``{"version", "bus", "schema"}``; ``schema`` is the store schema it
    migrates to (``corral.store.schema.SCHEMA_VERSION``, passed in: this module reads no store code)."""
    return {"version": corral.__version__, "bus": BUS, "schema": schema}
