"""Restart decisions after an instance exits (pure: no clock, no processes).

The schedule is a :class:`corral.exits.Backoff` built from settings
(``restart_backoff_*`` in corral/settings.py); its defaults are Kubernetes'
numbers. Worked example with the defaults: the delays before restarts 1, 2, 3,
... are 1 s, 2 s, 4 s, 8 s, ... 256 s, then 300 s for every further one; an
instance that stayed up ``RESET_AFTER`` seconds starts again from 1 s.
"""
from corral.exits import (  # noqa: F401  (the agent's restart vocabulary, kept in one place with corral up's)
    EXIT_UNKNOWN, FIRST_DELAY, MAX_DELAY, RESET_AFTER, Backoff, exit_message)

POLICIES = ("always", "on-failure", "never")


def should_restart(policy, returncode):
    """Whether an instance that exited with ``returncode`` is restarted under ``policy``.

    ``returncode`` is a ``Popen.returncode``: negative for a signal. A signal
    death is a failure for ``on-failure``.
    """
    if policy == "always":
        return True
    if policy == "on-failure":
        return returncode != 0
    if policy == "never":
        return False
    raise ValueError(f"restart policy {policy!r} is not one of {', '.join(POLICIES)}")


def restart_delay(failures):
    """Seconds to wait before a restart under the default schedule (see :class:`Backoff`)."""
    return Backoff().delay(failures)
