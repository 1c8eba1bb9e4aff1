"""Restart decisions after an instance exits (pure: no clock, no processes).

The delay constants live here, in one place, until a settings-driven backoff
replaces them. Worked example: the delays before restarts 1, 2, 3, ... are
1 s, 2 s, 4 s, 8 s, ... 256 s, then 300 s for every further one; an instance
that stayed up ``RESET_AFTER`` seconds starts again from 1 s.
"""
import signal

FIRST_DELAY = 1.0     # seconds before the first restart
MAX_DELAY = 300.0     # cap of the doubling
RESET_AFTER = 600.0   # up this long: the next failure counts as the first again

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
    """Seconds to wait before a restart, when ``failures`` (>= 1) exits happened in a row."""
    if failures < 1:
        raise ValueError(f"failures must be at least 1, not {failures}")
    return min(MAX_DELAY, FIRST_DELAY * 2 ** min(failures - 1, 30))


def exit_message(returncode):
    """One phrase for how a process ended: ``exited with code 3`` or ``killed by SIGKILL``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"
