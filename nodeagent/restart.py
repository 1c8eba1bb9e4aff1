"""Restart decisions after an instance exits (pure: no clock, no processes).

The schedule is a :class:`Backoff` built from settings (``restart_backoff_*``
in corral/settings.py); the module constants are Kubernetes' numbers, the
defaults. Worked example with the defaults: the delays before restarts 1, 2,
3, ... are 1 s, 2 s, 4 s, 8 s, ... 256 s, then 300 s for every further one; an
instance that stayed up ``RESET_AFTER`` seconds starts again from 1 s.
"""
import dataclasses
import signal

from nodeagent.process import EXIT_UNKNOWN

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


@dataclasses.dataclass(frozen=True)
class Backoff:
    """A restart schedule: ``first`` doubling up to ``cap``; a run of ``reset_after`` clears it."""

    first: float = FIRST_DELAY
    cap: float = MAX_DELAY
    reset_after: float = RESET_AFTER

    @classmethod
    def from_timings(cls, timings):
        """The schedule the settings ask for (``restart_backoff_first``, ``_max``, ``_reset``)."""
        return cls(first=timings.restart_backoff_first, cap=timings.restart_backoff_max,
                   reset_after=timings.restart_backoff_reset)

    def delay(self, failures):
        """Seconds to wait before a restart, when ``failures`` (>= 1) exits happened in a row."""
        if failures < 1:
            raise ValueError(f"failures must be at least 1, not {failures}")
        return min(self.cap, self.first * 2 ** min(failures - 1, 30))

    def failures_after(self, failures, ran_for):
        """The count of failures in a row after one more exit of a run that lasted ``ran_for`` seconds."""
        return 1 if ran_for >= self.reset_after else failures + 1


def restart_delay(failures):
    """Seconds to wait before a restart under the default schedule (see :class:`Backoff`)."""
    return Backoff().delay(failures)


def exit_message(returncode):
    """One phrase for how a process ended: ``exited with code 3`` or ``killed by SIGKILL``."""
    if returncode is None:
        return "still running"
    if returncode == EXIT_UNKNOWN:
        return "ended while the agent was down (exit status unknown)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"
