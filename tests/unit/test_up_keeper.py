"""corral up starts a daemon that exited again: after 1 s, doubling to 30 s while it keeps failing, and from
1 s again once a run lasted a minute."""
from corral.cli.up import Keeper


def test_an_exited_daemon_is_due_after_its_delay_and_only_then():
    k = Keeper(["node-1", "builder"], now=0.0)
    assert k.to_start(5.0) == [] and not k.waiting("node-1")
    assert k.exited("node-1", now=10.0) == 1.0
    assert k.waiting("node-1") and not k.waiting("builder")
    assert k.to_start(10.5) == []
    assert k.to_start(11.0) == ["node-1"] and not k.waiting("node-1")
    assert k.to_start(12.0) == []


def test_a_daemon_that_keeps_failing_waits_longer_up_to_30s_and_a_good_run_resets_it():
    k = Keeper(["r1"], now=0.0)
    delays, now = [], 100.0
    for _ in range(7):
        delays.append(k.exited("r1", now))
        now += delays[-1]
        assert k.to_start(now) == ["r1"]
        now += 2.0   # runs two seconds, then fails again
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    now += 60.0      # a run of a minute
    assert k.exited("r1", now) == 1.0


def test_several_daemons_due_at_once_start_in_name_order():
    k = Keeper(["r2", "r1", "node-1"], now=0.0)
    for name in ("r2", "node-1", "r1"):
        k.exited(name, now=100.0)
    assert k.to_start(101.0) == ["node-1", "r1", "r2"]
