"""Restart policy, backoff delays and exit messages."""
import pytest

from nodeagent.restart import MAX_DELAY, exit_message, restart_delay, should_restart


@pytest.mark.parametrize("policy, code, expected", [
    ("always", 0, True), ("always", 3, True), ("always", -9, True),
    ("on-failure", 0, False), ("on-failure", 1, True), ("on-failure", -15, True),
    ("never", 0, False), ("never", 1, False),
])
def test_should_restart(policy, code, expected):
    assert should_restart(policy, code) is expected


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="sometimes"):
        should_restart("sometimes", 1)


@pytest.mark.parametrize("failures, delay", [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, MAX_DELAY), (500, MAX_DELAY)])
def test_restart_delay_doubles_to_a_cap(failures, delay):
    assert restart_delay(failures) == delay


def test_restart_delay_needs_a_failure():
    with pytest.raises(ValueError):
        restart_delay(0)


@pytest.mark.parametrize("code, message", [(0, "exited with code 0"), (3, "exited with code 3"),
                                           (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")])
def test_exit_message(code, message):
    assert exit_message(code) == message


def test_the_backoff_schedule_is_a_setting():
    from corral.settings import Timings
    from nodeagent.restart import Backoff
    b = Backoff.from_timings(Timings(restart_backoff_first=0.5, restart_backoff_max=3.0, restart_backoff_reset=60.0))
    assert [b.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.failures_after(4, ran_for=59.9) == 5
    assert b.failures_after(4, ran_for=60.0) == 1, "a run as long as reset_after starts the schedule over"


def test_an_exit_of_unknown_status_is_a_failure_and_says_so():
    from nodeagent.process import EXIT_UNKNOWN
    assert should_restart("on-failure", EXIT_UNKNOWN)
    assert exit_message(EXIT_UNKNOWN) == "ended while the agent was down (exit status unknown)"
