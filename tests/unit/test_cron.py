"""reconciler/cron.py: due slots, concurrency, deadlines, run states and history, by table."""
import datetime

import pytest
from hypothesis import given, settings, strategies as st

from corral.schedule import parse
from corral.store.base import RunRecord
from reconciler.cron import CATCH_UP, CronSpec, cron_spec, cursor, due, due_slots, next_wake, prune, run_state, trigger

T0 = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp())  # a 10 s slot boundary


def spec(**kw):
    return CronSpec(schedule=parse(kw.pop("schedule", "every 10s")), **kw)


def run(rid, state, slot=None, started=None, created=0.0, kind="schedule"):
    return RunRecord(id=rid, app="a", process="p", slot=slot, kind=kind, state=state, node="n1",
                     started_at=started, created_at=created)


@pytest.mark.parametrize("cron, runs, after, now, start, skipped, stopped", [
    pytest.param(spec(), [], T0, T0 + 9, [], [], [], id="nothing-due-before-the-first-slot"),
    pytest.param(spec(), [], T0, T0 + 10, [T0 + 10], [], [], id="a-slot-at-now-is-due"),
    pytest.param(spec(), [], T0, T0 + 35, [T0 + 10, T0 + 20, T0 + 30], [], [],
                 id="allow-starts-every-missed-slot"),
    pytest.param(spec(starting_deadline=12), [], T0, T0 + 35, [T0 + 30], [T0 + 20], [],
                 id="deadline-skips-what-is-too-late-and-starts-the-rest"),
    pytest.param(spec(starting_deadline=12), [], T0, T0 + 22, [T0 + 10, T0 + 20], [], [],
                 id="late-within-the-deadline-still-starts"),
    pytest.param(spec(concurrency="forbid"), [], T0, T0 + 35, [T0 + 30], [T0 + 10, T0 + 20], [],
                 id="forbid-starts-the-newest-of-several"),
    pytest.param(spec(concurrency="forbid"), [run("r1", "running", T0, T0)], T0, T0 + 10, [], [T0 + 10], [],
                 id="forbid-skips-while-a-run-is-active"),
    pytest.param(spec(concurrency="forbid"), [run("r1", "succeeded", T0, T0)], T0, T0 + 10, [T0 + 10], [], [],
                 id="forbid-starts-when-the-last-run-finished"),
    pytest.param(spec(concurrency="replace"), [run("r1", "running", T0, T0)], T0, T0 + 10, [T0 + 10], [], ["r1"],
                 id="replace-stops-the-active-run"),
    pytest.param(spec(concurrency="allow"), [run("r1", "running", T0, T0)], T0, T0 + 10, [T0 + 10], [], [],
                 id="allow-overlaps"),
    pytest.param(spec(active_deadline=30), [run("r1", "running", T0, T0)], T0, T0 + 31, [T0 + 10, T0 + 20, T0 + 30],
                 [], ["r1"], id="active-deadline-stops-a-long-run"),
    pytest.param(spec(active_deadline=30), [run("r1", "pending", T0, None)], T0, T0 + 5, [], [], [],
                 id="active-deadline-counts-from-the-start-not-the-slot"),
])
def test_due(cron, runs, after, now, start, skipped, stopped):
    got = due(cron, runs, after, now)
    assert list(got.start) == start
    assert [s for s, _ in got.skip] == skipped
    assert [i for i, _ in got.stop] == stopped


def test_skip_reasons_say_why():
    got = due(spec(starting_deadline=12), [], T0, T0 + 35)
    assert got.skip[0][1] == ("2 slots up to 2026-01-01 00:00:20 UTC missed by more than the startingDeadline "
                              "of 12s (15s late)")
    got = due(spec(concurrency="forbid"), [run("r1", "running", T0, T0)], T0, T0 + 10)
    assert "run r1 is still active (concurrency forbid)" in got.skip[0][1]


def test_a_long_outage_without_a_deadline_catches_up_a_bounded_number():
    got = due(spec(), [], T0, T0 + 10 * (CATCH_UP + 5))
    assert len(got.start) == CATCH_UP and got.start[-1] == T0 + 10 * (CATCH_UP + 5)
    assert got.skip == ((T0 + 50, "5 slots up to 2026-01-01 00:00:50 UTC skipped: more than 100 slots were due "
                                  "at once"),)


def test_a_week_long_outage_is_one_skip():
    got = due(spec(schedule="every 1s", starting_deadline=5), [], T0, T0 + 7 * 86400)
    assert len(got.start) == 6 and len(got.skip) == 1
    assert got.skip[0][1].startswith("604794 slots up to")


def test_cursor_is_the_newest_slot_or_the_apply_time():
    assert cursor([], 123.0) == 123.0
    assert cursor([run("r1", "succeeded", T0), run("r2", "skipped", T0 + 10), run("t", "running")], 1.0) == T0 + 10


def test_a_new_leader_after_the_cursor_never_repeats_a_slot():
    first = due(spec(), [], T0, T0 + 20)
    runs = [run(f"r{s}", "pending", s) for s in first.start]
    second = due(spec(), runs, cursor(runs, T0), T0 + 30)
    assert list(first.start) == [T0 + 10, T0 + 20] and list(second.start) == [T0 + 30]


@pytest.mark.parametrize("concurrency, runs, want", [
    ("allow", [run("r1", "running")], ("start", ())),
    ("forbid", [run("r1", "running")], "skip"),
    ("forbid", [run("r1", "succeeded")], ("start", ())),
    ("replace", [run("r1", "running")], ("start", (("r1", "replaced by the triggered run t (concurrency replace)"),))),
])
def test_trigger(concurrency, runs, want):
    got = trigger(concurrency, runs + [run("t", "requested", kind="trigger")], "t")
    assert (got[0] if want == "skip" else got) == want


@pytest.mark.parametrize("observed, lost, want", [
    (None, False, None),
    (None, True, ("failed", None, "its node was lost; a run is never started twice")),
    ({"state": "pending"}, False, None),
    ({"state": "running"}, False, ("running", None, None)),
    ({"state": "backoff", "exit_code": 1}, False, ("running", None, None)),
    ({"state": "stopped", "exit_code": 0, "message": "exited 0"}, False, ("succeeded", 0, "exited 0")),
    ({"state": "stopped", "exit_code": -15, "message": "stopped"}, False, ("failed", -15, "stopped")),
    ({"state": "failed", "exit_code": 3, "message": "exited 3"}, False, ("failed", 3, "exited 3")),
    ({"state": "pending"}, True, ("failed", None, "its node was lost; a run is never started twice")),
    ({"state": "running"}, True, ("failed", None, "its node was lost; a run is never started twice")),
])
def test_run_state(observed, lost, want):
    assert run_state(observed, lost) == want


def test_prune_keeps_the_history_and_the_cursor():
    runs = ([run(f"s{i}", "succeeded", T0 + i, created=i) for i in range(5)]
            + [run(f"f{i}", "failed", T0 + 10 + i, created=10 + i) for i in range(3)]
            + [run("k", "skipped", T0 + 20, created=20), run("live", "running", T0 + 21, created=21)])
    assert prune(runs, keep_succeeded=2, keep_failed=1) == ["f0", "f1", "f2", "s0", "s1", "s2"]
    assert prune(runs, keep_succeeded=0, keep_failed=0) == sorted(
        [f"s{i}" for i in range(5)] + ["f0", "f1", "f2", "k"])
    only = [run("k", "skipped", T0 + 20, created=20)]
    assert prune(only, keep_succeeded=0, keep_failed=0) == []


def test_cron_spec_from_a_process():
    got = cron_spec({"command": "x", "schedule": "@daily", "timezone": "Europe/London", "concurrency": "forbid",
                     "startingDeadline": "5m", "activeDeadline": "1h", "history": {"succeeded": 2}})
    assert got == CronSpec(schedule=parse("@daily"), timezone="Europe/London", concurrency="forbid",
                           starting_deadline=300.0, active_deadline=3600.0, keep_succeeded=2, keep_failed=1)
    assert cron_spec({"command": "x"}) is None


def test_next_wake_is_the_earliest_slot_of_any_app():
    from corral.store.base import AppRecord

    def rec(name, deleting=False, **procs):
        return AppRecord(name=name, labels={}, spec={"processes": procs}, source_digest="", generation=1,
                         resource_version=1, deleting=deleting, status={}, created_at=0.0, updated_at=0.0)
    apps = [rec("a", report={"schedule": "every 10s"}), rec("b", x={"schedule": "every 5s"}, web={"command": "s"}),
            rec("c", y={"schedule": "every 5s"}), rec("d", True, z={"schedule": "every 1s"})]
    assert next_wake(apps, T0 + 1) == (T0 + 5, ("b", "c"))
    assert next_wake(apps, T0 + 5) == (T0 + 10, ("a", "b", "c"))
    assert next_wake([rec("w", web={"command": "s"})], T0) == (None, ())


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50), st.integers(0, 500), st.integers(0, 500), st.integers(0, 100))
def test_missed_slots_are_counted_like_a_plain_count(step, offset, span, deadline):
    after, now = T0 + offset, T0 + offset + span
    fresh, missed = due_slots(spec(schedule=f"every {step}s", starting_deadline=deadline), after, now)
    every = [s for s in range(after + 1, now + 1) if s % step == 0]
    late = [s for s in every if now - s > deadline]
    assert fresh == [s for s in every if now - s <= deadline]
    assert missed == ((len(late), late[-1]) if late else None)
