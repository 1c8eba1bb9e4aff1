"""Why a build failed, in one sentence a user can act on.

A failed build's ``error`` is shown by ``corral get builds`` and in the app's
``Built`` condition, so it must name the cause, not the builder's internals.
Pip's reason is taken from its own ``ERROR:`` lines.

The functions here are purely computational: they read the text they are
given and nothing else.
"""

_ERROR_PREFIX = "ERROR:"

# pip follows "Could not find a version that satisfies the requirement X
# (from versions: ...)" with "No matching distribution found for X", which
# says less. When both are present the fuller line is the reason.
_SUMMARY_PREFIXES = ("No matching distribution found for ",)


class BuildFailed(Exception):
    """A build could not produce its image; ``str(exc)`` is one sentence saying why.

    ``image`` is the image id when it was known before the failure, and
    ``phases`` the seconds spent per phase until then.
    """

    def __init__(self, message, image=None, phases=None):
        super().__init__(message)
        self.image = image
        self.phases = dict(phases or {})


class BuildAbandoned(Exception):
    """The builder is stopping and left the build for another builder to claim."""


def pip_reason(output):
    """Pip's reason for failing, from its captured output, or None if it gave none.

    The reason is the text of pip's last ``ERROR:`` line, skipping pip's
    closing summary line ("No matching distribution found for X") when an
    earlier ``ERROR:`` line says more::

        ERROR: Could not find a version that satisfies the requirement zz (from versions: none)
        ERROR: No matching distribution found for zz
        -> "Could not find a version that satisfies the requirement zz (from versions: none)"
    """
    reasons = [line[len(_ERROR_PREFIX):].strip()
               for line in output.splitlines() if line.startswith(_ERROR_PREFIX)]
    reasons = [r for r in reasons if r]
    if not reasons:
        return None
    fuller = [r for r in reasons if not r.startswith(_SUMMARY_PREFIXES)]
    return (fuller or reasons)[-1]


def uv_reason(output):
    """uv's reason for failing, from its captured output, or None if it gave none.

    uv says what failed on an ``error:`` line and why on the ``cause:`` /
    ``Caused by:`` lines after it; the reason is the error with its last cause::

        error: Failed to build `numpy==1.21.0`
          cause: The build backend returned an error
          cause: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)
        -> "Failed to build `numpy==1.21.0`: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)"
    """
    error, cause = None, None
    for raw in output.splitlines():
        line = raw.strip().lstrip("×╰─▶ ").strip()
        lowered = line.lower()
        if lowered.startswith("error:"):
            error, cause = line[len("error:"):].strip(), None
        elif error is not None and (lowered.startswith("cause:") or lowered.startswith("caused by:")):
            cause = line.split(":", 1)[1].strip() or cause
    if not error:
        return None
    if cause and cause != error:
        if error.lower().startswith("no solution found"):
            return cause
        return f"{error.rstrip('.')}: {cause}"
    return error


def installer_failure_sentence(engine, action, output, returncode, log_path):
    """The one-sentence error of an installer (``engine`` "uv" or "pip") that failed to ``action``."""
    reason = uv_reason(output) if engine == "uv" else pip_reason(output)
    if reason is not None:
        return f"{engine} could not {action} the requirements: {reason}"
    return (f"{engine} could not {action} the requirements (exit status {returncode}, no reason given;"
            f" see {log_path})")


def pip_failure_sentence(output, returncode, log_path):
    """The one-sentence error of a failed ``pip install``, given its captured output."""
    reason = pip_reason(output)
    if reason is not None:
        return f"pip could not install the requirements: {reason}"
    return f"pip could not install the requirements (exit status {returncode}, no reason given; see {log_path})"
