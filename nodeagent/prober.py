"""Every instance's health checks on one schedule: one green thread runs them, not one per instance.

Checks fall due on the shared grid (:func:`nodeagent.health.next_check`), so
at each instant the checks of hundreds of instances are due together. The
prober wakes once for all of them and runs each:

- **at once, in its own thread**, when the check can answer without waiting:
  a tcp check of a numeric address, whose non-blocking connect on the same
  host has its answer by the second look (:func:`nodeagent.probes.probe_now`);
- **in a green thread of its own** otherwise (an exec or http check, a name
  to look up, a connect still in progress: a far address, an app whose
  listen backlog is full), so that no app can hold up another app's check.

Each result goes to the check's :class:`Job`, which keeps the tally
(:class:`nodeagent.health.Tracker`) and rings its instance's worker only
when the verdict says something new (ready flips, the reason changes, a
restart is due): an instance whose check keeps passing costs a connect a
second and nothing else, no wake-up of its worker, no timer of its own.

A job's next run is due ``interval`` after its last one ended, as before;
one job never runs twice at once.
"""
import heapq
import itertools
import logging
import time

import eventlet

from nodeagent import health
from nodeagent.wakeup import Wakeup

log = logging.getLogger(__name__)


class Job:
    """One run of a process's health check, as the prober schedules it.

    ``quick()`` answers ``(ok, detail)`` without waiting, or None when it would have to;
    ``full()`` answers ``(ok, detail)``, waiting as long as the check's timeout allows.
    ``wake`` rings the instance's worker, which then :meth:`take` s the new verdict;
    ``observe(ok, seconds)``, when given, sees every result (the agent's metrics)."""

    def __init__(self, check, first_due, *, quick, full, wake, observe=None):
        self.check = check
        self.first_due = first_due
        self.quick = quick
        self.full = full
        self.wake = wake
        self.observe = observe
        self.tracker = health.Tracker(check)
        self.cancelled = False
        self._said = None       # the last verdict given to the worker
        self._pending = None    # a verdict not yet taken

    def take(self):
        """The verdict the worker has not seen yet (a :class:`nodeagent.health.Verdict`), or None."""
        verdict, self._pending = self._pending, None
        return verdict

    def result(self, ok, detail, seconds):
        """Take one result; ring the worker when its verdict differs from the last one given.
        After a restart verdict the job runs no more (its process is about to be stopped)."""
        if self.cancelled:
            return
        if self.observe is not None:
            self.observe(ok, seconds)
        verdict = self.tracker.record(ok, detail)
        if verdict.restart:
            self.cancelled = True
        if verdict != self._said:
            self._said = self._pending = verdict
            self.wake()


class Prober:
    """Runs the :class:`Job` s given to :meth:`add` until each is :meth:`remove` d (see the module)."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._heap = []              # (due, tie, job)
        self._tie = itertools.count()
        self._bell = Wakeup()
        self._thread = None
        self._waiting = 0            # jobs running in threads of their own

    def add(self, job):
        """Schedule ``job``'s first run at its ``first_due``; returns the job."""
        self._push(job.first_due, job, from_outside=True)
        return job

    def remove(self, job):
        """Run ``job`` no more (idempotent); a result still on its way is dropped."""
        job.cancelled = True

    def _push(self, due, job, from_outside):
        heapq.heappush(self._heap, (due, next(self._tie), job))
        if self._thread is None:
            self._thread = eventlet.spawn(self._run)
        elif from_outside and self._heap[0][2] is job:
            self._bell.ring()   # due before what the prober sleeps towards

    def _run(self):
        try:
            while self._heap or self._waiting:
                now = self.clock()
                while self._heap and self._heap[0][0] <= now:
                    _, _, job = heapq.heappop(self._heap)
                    if not job.cancelled:
                        self._start(job)
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap and not self._waiting:
                    break
                self._bell.wait(max(0.0, self._heap[0][0] - self.clock()) if self._heap else None)
        finally:
            self._thread = None
            if self._heap:   # added while the thread was ending
                self._thread = eventlet.spawn(self._run)

    def _start(self, job):
        began = time.monotonic()
        try:
            answer = job.quick()
        except Exception as e:
            answer = (False, f"the check could not be run ({e.__class__.__name__}: {e})")
            log.exception("a health check could not be run")
        if answer is None:
            self._waiting += 1
            eventlet.spawn_n(self._wait_for, job, began)
        else:
            self._finish(job, answer, began, from_outside=False)

    def _wait_for(self, job, began):
        try:
            try:
                answer = job.full()
            except Exception as e:
                answer = (False, f"the check could not be run ({e.__class__.__name__}: {e})")
                log.exception("a health check could not be run")
            self._finish(job, answer, began, from_outside=True)
        finally:
            self._waiting -= 1
            self._bell.ring()

    def _finish(self, job, answer, began, from_outside):
        ok, detail = answer
        try:
            job.result(ok, detail, time.monotonic() - began)
        except Exception:
            log.exception("a health check's result could not be taken")
        if not job.cancelled:
            self._push(health.next_check(self.clock(), job.check.interval), job, from_outside)
