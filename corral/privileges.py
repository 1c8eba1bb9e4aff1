"""Giving up privileges for good, before running someone else's code.

Shared by the agent (an app's exec checks and sessions, :mod:`nodeagent.identity`) and the
builder (an app's build commands, :mod:`builder.buildusers`): a child of a root daemon calls
:func:`become` between fork and exec, after which it has no capability left and cannot gain
one (``setuid`` away from uid 0 clears the permitted and effective sets; ``PR_SET_NO_NEW_PRIVS``
makes no setuid program or file capability give one back). A child of a daemon that is not
root calls :func:`no_new_privs` alone. Imports only ``ctypes`` and ``os``.
"""
import ctypes
import os

PR_SET_NO_NEW_PRIVS = 38

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl   # loaded before any fork: a child only calls it
except (OSError, AttributeError):
    _prctl = None


def no_new_privs():
    """Set ``PR_SET_NO_NEW_PRIVS`` on this process (inherited by all it starts, never cleared).
    Raises OSError when the kernel refuses it: nothing of an app runs without it."""
    if _prctl is None:
        raise OSError(0, "prctl is not available")
    if _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become(uid, gid):
    """Become ``uid``/``gid`` for good, with no supplementary groups and no new privileges.

    Called by root in a child before exec: after it the process has no
    capability left and cannot gain one. Raises OSError on the first step that
    fails; the caller must then not exec.
    """
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    no_new_privs()
