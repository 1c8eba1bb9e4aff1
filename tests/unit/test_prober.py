"""The node's prober: one green thread runs every instance's health check (nodeagent/prober.py)."""
import corral.green

corral.green.patch()

import time  # noqa: E402

import eventlet  # noqa: E402
import eventlet.event  # noqa: E402
import pytest  # noqa: E402

from nodeagent.health import Check  # noqa: E402
from nodeagent.prober import Job, Prober  # noqa: E402

TCP = Check(kind="tcp", target=True, interval=0.05, timeout=1.0, failures=2)


def until(what, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        eventlet.sleep(0.005)


class Seen:
    """A job's worker: counts its wake-ups and keeps every verdict it took."""

    def __init__(self, answers=None):
        self.answers = list(answers or [])
        self.runs = 0
        self.wakes = 0
        self.verdicts = []
        self.job = None

    def quick(self):
        self.runs += 1
        return self.answers.pop(0) if self.answers else (True, "connected")

    def wake(self):
        self.wakes += 1
        self.verdicts.append(self.job.take())


def job_for(seen, check=TCP, full=None, first_due=0.0):
    seen.job = Job(check, first_due, quick=seen.quick, full=full or (lambda: (True, "full")), wake=seen.wake)
    return seen.job


def test_a_check_that_keeps_passing_wakes_its_worker_once():
    prober, seen = Prober(), Seen()
    prober.add(job_for(seen))
    until("ten runs", lambda: seen.runs >= 10)
    prober.remove(seen.job)
    assert seen.wakes == 1 and seen.verdicts[0].ready


def test_the_worker_is_woken_for_each_new_verdict_and_for_the_restart_after_which_nothing_runs():
    prober = Prober()
    fail = (False, "refused")
    seen = Seen([fail, (True, "ok"), (True, "ok"), fail, fail, (True, "never asked")])
    prober.add(job_for(seen))
    until("the restart verdict", lambda: any(v.restart for v in seen.verdicts))
    runs = seen.runs
    eventlet.sleep(TCP.interval * 4)
    assert seen.runs == runs == 5, "a job runs no more once it asked for a restart"
    assert [(v.ready, v.restart) for v in seen.verdicts] == [(False, False), (True, False), (False, False),
                                                             (False, True)]
    assert "failed 2 times in a row (refused)" in seen.verdicts[-1].reason


def test_a_check_that_must_wait_holds_up_no_other_check_and_never_runs_twice_at_once():
    prober, stuck, other = Prober(), Seen(), Seen()
    released, fulls = eventlet.event.Event(), []

    def hanging():
        fulls.append(1)
        released.wait()
        return False, "timed out"

    stuck.quick = lambda: None   # as a connect still in progress
    prober.add(job_for(stuck, full=hanging))
    prober.add(job_for(other))
    until("the other check to run ten times", lambda: other.runs >= 10)
    assert fulls == [1], "the waiting check was started again while it waited"
    released.send()
    until("the waiting check's verdict", lambda: stuck.verdicts)
    assert not stuck.verdicts[0].ready and "timed out" in stuck.verdicts[0].reason
    prober.remove(stuck.job)
    prober.remove(other.job)


def test_a_removed_job_runs_no_more_and_a_result_on_its_way_is_dropped():
    prober, seen = Prober(), Seen()
    released = eventlet.event.Event()
    seen.quick = lambda: None
    prober.add(job_for(seen, full=lambda: (released.wait(), (True, "late"))[1]))
    until("the check to be under way", lambda: prober._waiting == 1)
    prober.remove(seen.job)
    released.send()
    until("the check to end", lambda: prober._waiting == 0)
    eventlet.sleep(TCP.interval * 2)
    assert seen.wakes == 0


def test_a_check_that_raises_is_a_failed_result_and_the_prober_goes_on():
    prober, bad, good = Prober(), Seen(), Seen()

    def broken():
        raise RuntimeError("no such thing")

    bad.quick = broken
    prober.add(job_for(bad))
    prober.add(job_for(good))
    until("the bad check's verdict", lambda: bad.verdicts)
    assert "could not be run (RuntimeError: no such thing)" in bad.verdicts[0].reason
    until("the good check to keep running", lambda: good.runs >= 5)
    prober.remove(bad.job)
    prober.remove(good.job)


def test_the_first_run_waits_for_the_initial_delay():
    prober, seen = Prober(), Seen()
    began = time.time()
    prober.add(job_for(seen, first_due=began + 0.3))
    until("the first run", lambda: seen.runs)
    assert time.time() - began >= 0.3
    prober.remove(seen.job)


@pytest.mark.parametrize("jobs", [1, 200])
def test_the_thread_ends_when_nothing_is_left_and_starts_again_for_a_new_job(jobs):
    prober = Prober()
    seen = [Seen() for _ in range(jobs)]
    for s in seen:
        prober.add(job_for(s))
    until("every job to run", lambda: all(s.runs for s in seen))
    for s in seen:
        prober.remove(s.job)
    until("the prober's thread to end", lambda: prober._thread is None)
    again = Seen()
    prober.add(job_for(again))
    until("the new job to run", lambda: again.runs)
    prober.remove(again.job)
