"""Which Python interpreter an image's virtualenv is made from.

An app asks for ``python: "3.11"`` (major.minor) or nothing (the builder's
own). The builder uses its own interpreter when the major.minor match, else
``pythonX.Y`` found on PATH, else the build fails naming the version and the
builder. A ``pythonX.Y`` on PATH is run once to learn its full version and
platform: a pyenv shim for a version that is not selected exists on PATH but
does not run, and must count as absent.

The virtualenv links to the interpreter's real path, so every node that runs
the image needs the same interpreter at the same path.
"""
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import sysconfig

from builder.failures import BuildFailed

_PROBE = (
    "import json, sys, sysconfig; "
    "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], "
    "'platform': sysconfig.get_platform() + '-' + sys.implementation.name}))"
)
_PROBE_TIMEOUT = 30.0
_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")


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


def find_interpreter(requested, builder_name, *, own=None, which=shutil.which, run=probe):
    """The interpreter for an app's ``python`` field (``"3.11"`` or None).

    Raises BuildFailed when the version is malformed or no interpreter of
    that major.minor runs on this builder.
    """
    own = own or own_interpreter()
    if requested is None:
        return own
    requested = str(requested)
    if not _VERSION.match(requested):
        raise BuildFailed(f"python version {requested!r} is not of the form MAJOR.MINOR, e.g. \"3.11\"")
    if own.major_minor == requested:
        return own
    path = which(f"python{requested}")
    found = run(path) if path else None
    if found is None or found.major_minor != requested:
        raise BuildFailed(f"python {requested} is not available on builder {builder_name}")
    return found
