"""How a process ended, and when to start it again: pure, shared by the agent and ``corral up``.

The agent restarts an app's instance on this schedule, ``corral up`` its
daemons (with other numbers). The default constants are Kubernetes' numbers.
"""
import dataclasses
import signal

FIRST_DELAY = 1.0     # seconds before the first restart
MAX_DELAY = 300.0     # cap of the doubling
RESET_AFTER = 600.0   # up this long: the next failure counts as the first again
EXIT_UNKNOWN = -256   # the returncode of an adopted process that ended: not our child, its status is lost


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
