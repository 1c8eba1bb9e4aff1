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


def pip_failure_sentence(output, returncode, log_path):
    """The one-sentence error of a failed ``pip install``, given its captured output."""
    reason = pip_reason(output)
    if reason is not None:
        return f"pip could not install the requirements: {reason}"
    return f"pip could not install the requirements (exit status {returncode}, no reason given; see {log_path})"
