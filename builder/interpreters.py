"""Which Python interpreter an image's virtualenv is made from.

An app asks for ``python: "3.11"`` (major.minor) or nothing (the builder's
own). The builder uses its own interpreter when the major.minor match, else
``pythonX.Y`` found on PATH, else the build fails naming the version and the
builder. A ``pythonX.Y`` on PATH is run once to learn its full version and
platform: a pyenv shim for a version that is not selected exists on PATH but
does not run, and must count as absent.

The virtualenv links to the interpreter's real path, so every node that runs
the image needs the same interpreter at the same path, and every app user
must be able to run it. An interpreter that other users cannot reach (a
pyenv install inside root's 0700 home) is therefore passed over for one of
the same major.minor that they can (``pythonX.Y`` on PATH, then in
``/usr/local/bin`` and ``/usr/bin``); when there is none it is used all the
same, and an agent that runs apps as their own users refuses such an image
with a sentence naming the folder in the way.
"""
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig

from builder.failures import BuildFailed
from corral.reach import open_to_others

_PROBE = (
    "import json, sys, sysconfig; "
    "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], "
    "'platform': sysconfig.get_platform() + '-' + sys.implementation.name}))"
)
_PROBE_TIMEOUT = 30.0
_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
PUBLIC_PLACES = ("/usr/local/bin", "/usr/bin")   # where a system's shared interpreters live


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """A Python interpreter a virtualenv can be made from."""

    executable: str
    version: str    # "3.11.7"
    platform: str   # "linux-x86_64-cpython"

    @property
    def major_minor(self):
        """``"3.11"`` of ``"3.11.7"``."""
        return ".".join(self.version.split(".")[:2])


def own_interpreter():
    """The interpreter this builder runs on."""
    return Interpreter(
        executable=sys.executable,
        version="%d.%d.%d" % sys.version_info[:3],
        platform=sysconfig.get_platform() + "-" + sys.implementation.name,
    )


def probe(executable):
    """Run ``executable`` to learn its version and platform; None when it does not run."""
    try:
        done = subprocess.run([executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=_PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return Interpreter(executable=executable, version=facts["version"], platform=facts["platform"])


def find_interpreter(requested, builder_name, *, own=None, which=shutil.which, run=probe, public=open_to_others):
    """The interpreter for an app's ``python`` field (``"3.11"`` or None).

    The builder's own when the major.minor match, else ``pythonX.Y`` on PATH;
    either way one that every user may run is preferred (:func:`shared`).
    Raises BuildFailed when the version is malformed or no interpreter of
    that major.minor runs on this builder.
    """
    own = own or own_interpreter()
    if requested is None:
        return shared(own, which=which, run=run, public=public)
    requested = str(requested)
    if not _VERSION.match(requested):
        raise BuildFailed(f"python version {requested!r} is not of the form MAJOR.MINOR, e.g. \"3.11\"")
    if own.major_minor == requested:
        return shared(own, which=which, run=run, public=public)
    path = which(f"python{requested}")
    found = run(path) if path else None
    if found is None or found.major_minor != requested:
        raise BuildFailed(f"python {requested} is not available on builder {builder_name}")
    return shared(found, which=which, run=run, public=public)


def shared(chosen, *, which=shutil.which, run=probe, public=open_to_others):
    """``chosen`` when every user may run it; else the first interpreter of its major.minor that
    they may (on PATH, then in :data:`PUBLIC_PLACES`) and that runs; else ``chosen`` all the same."""
    if public(chosen.executable):
        return chosen
    name = f"python{chosen.major_minor}"
    for path in [which(name)] + [os.path.join(place, name) for place in PUBLIC_PLACES]:
        if path and public(path) and os.path.realpath(path) != os.path.realpath(chosen.executable):
            found = _probed(path, run)
            if found is not None and found.major_minor == chosen.major_minor:
                return found
    return chosen


def _probed(path, run):
    """``run(path)``, remembered per path for the real :func:`probe` (a build asks once per image)."""
    return _probe_once(path) if run is probe else run(path)


@functools.lru_cache(maxsize=32)
def _probe_once(path):
    return probe(path)
