"""When a schedule fires: ``slots(schedule, tz, after, until)``. Pure.

A *slot* is one instant a schedule names, as an aware UTC datetime. Every
reconciler computes the same slots from the same schedule, whatever moment it
starts from: a leader that takes over at any instant ``t`` and asks for the
slots after ``t`` gets exactly the ones its predecessor had not reached. That
is what lets the slot be the key of a run (``(app, process, slot)`` unique).

Three forms:

- cron, five fields (``"0 7 * * 1-5"``), read by cronsim in the schedule's
  time zone, with Debian cron's rules for daylight saving time: a job at a
  fixed local time that falls in the hour skipped in spring runs once, at the
  first minute after the jump (02:30 -> 03:00); one that falls in the hour
  repeated in autumn runs once, at its first occurrence. A job whose minute or
  hour is a wildcard (``*/15 * * * *``) follows real time: nothing in the
  skipped hour, every quarter of the repeated one. Where the clocks move by
  other than whole hours (Lord Howe Island's 30 minutes), cronsim loses
  minutes, so the count goes stretch by stretch of one UTC offset under the
  same rules (:func:`_odd_slots`).
- ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``,
  ``@midnight``, ``@hourly``: the usual five-field equivalents.
- ``every N{s,m,h,d}`` (``every 10m``, ``every 2s``): the instants that are
  whole multiples of N since 1970-01-01T00:00Z. The time zone plays no part.

Nothing here reads a clock: ``after`` and ``until`` are given.
"""
import dataclasses
import datetime
import re
import zoneinfo

from cronsim import CronSim, CronSimError

UTC = datetime.timezone.utc

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"every\s+([0-9]+)\s*([smhd])")


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be read; the message is one sentence."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a five-field cron expression, or a fixed interval in seconds."""

    cron: str = ""
    interval: int = 0


def parse(schedule):
    """Read ``schedule`` (cron, an ``@`` alias, or ``every N{s,m,h,d}``) into a
    :class:`Schedule`, or raise :class:`ScheduleError` saying what is wrong."""
    if not isinstance(schedule, str) or not schedule.strip():
        raise ScheduleError("a schedule is a non-empty string such as '0 7 * * 1-5', '@daily' or 'every 10m'")
    text = " ".join(schedule.split())
    if text.lower().startswith("every"):
        m = _EVERY.fullmatch(text.lower())
        if not m or int(m.group(1)) <= 0:
            raise ScheduleError(f"{schedule!r} is not an interval: write 'every' and a whole number "
                                f"above 0 with s, m, h or d ('every 10m', 'every 30s')")
        return Schedule(interval=int(m.group(1)) * _UNITS[m.group(2)])
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ScheduleError(f"{schedule!r} is not a known alias (one of {', '.join(sorted(ALIASES))})")
        return Schedule(cron=ALIASES[text.lower()])
    if len(text.split()) != 5:
        raise ScheduleError(f"{schedule!r} has {len(text.split())} fields: a cron schedule has five "
                            f"(minute hour day-of-month month day-of-week); for seconds write 'every 10s'")
    try:
        CronSim(text, datetime.datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError) as e:
        raise ScheduleError(f"{schedule!r} is not a valid cron schedule: {e}") from None
    return Schedule(cron=text)


def zone(tz):
    """The ``ZoneInfo`` of an IANA name (``None`` or ``""`` is UTC), or :class:`ScheduleError`."""
    if not tz or tz == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{tz!r} is not a known time zone (an IANA name such as 'Europe/London')") from None


def slots(schedule, tz, after, until):
    """The slots of ``schedule`` in time zone ``tz`` strictly after ``after`` and
    at or before ``until`` (aware datetimes), in order, as aware UTC datetimes.
    A generator: take what you need. A purely computational function.

    ``slots(s, tz, a, c)`` is always ``slots(s, tz, a, b)`` followed by
    ``slots(s, tz, b, c)`` for any ``a <= b <= c``: where a count starts never
    changes what it finds.
    """
    sched = schedule if isinstance(schedule, Schedule) else parse(schedule)
    after, until = _utc(after), _utc(until)
    if sched.interval:
        yield from _interval_slots(sched.interval, after, until)
        return
    local = zone(tz)
    found = _odd_slots(sched.cron, local, after) if _moves_odd(local, after) else _cronsim_slots(sched.cron, local, after)
    for t in found:
        if t > until:
            return
        if t > after:
            yield t


def _cronsim_slots(cron, local, after):
    """cronsim's slots after ``after`` in zone ``local``, as UTC datetimes. cronsim counts
    fixed-time jobs in naive local time, so an instant in the repeated hour (fold=1) restarts
    the count an hour early: the caller drops what comes out at or before ``after``."""
    for t in CronSim(cron, after.astimezone(local)):
        yield t.astimezone(UTC)


_HOUR = datetime.timedelta(hours=1)
_DAY = datetime.timedelta(days=1)


def _moves_odd(local, around):
    """Whether zone ``local``'s clocks move by other than whole hours around ``around`` (Lord
    Howe's move 30 minutes): cronsim steps hours by 3600 real seconds and goes wrong there."""
    if local is UTC:
        return False
    offsets = {(around + k * 91 * _DAY).astimezone(local).utcoffset() for k in range(-2, 3)}
    return any((a - b) % _HOUR for a in offsets for b in offsets)


def _first_other_offset(local, lo, hi, offset):
    """The first instant in ``(lo, hi]`` whose UTC offset in ``local`` is not ``offset``, to the
    second, given that ``lo`` has ``offset`` and ``hi`` has not (by halving)."""
    while hi - lo > datetime.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        lo, hi = (mid, hi) if mid.astimezone(local).utcoffset() == offset else (lo, mid)
    return hi.replace(microsecond=0)


def _next_change(local, after):
    """The first instant after ``after`` whose UTC offset in ``local`` differs from ``after``'s
    (within 400 days; None when there is none)."""
    offset = after.astimezone(local).utcoffset()
    for day in range(400):
        lo, hi = after + day * _DAY, after + (day + 1) * _DAY
        if hi.astimezone(local).utcoffset() != offset:
            return _first_other_offset(local, lo, hi, offset)
    return None


def _repeat_ends(local, at):
    """When the wall times repeated after the clocks went back, at most a day before ``at``, end
    (the change plus the step back); None when they did not go back then."""
    offset = at.astimezone(local).utcoffset()
    earlier = at - _DAY
    before = earlier.astimezone(local).utcoffset()
    if before <= offset:
        return None
    return _first_other_offset(local, earlier, at, before) + (before - offset)


def _odd_slots(cron, local, after):
    """The slots after ``after`` in a zone whose clocks move by other than whole hours, counted
    in each stretch of one UTC offset with cronsim on that fixed offset (exact there), with the
    rules of the module docstring where the stretches meet: a fixed-time job whose wall time
    the jump forward skipped runs once at the jump; one whose wall time comes twice runs at the
    first only; a wildcard job follows real time."""
    fixed = not cron.split()[0].startswith("*") and not cron.split()[1].startswith("*")
    begins, last = after, None   # the stretch: from ``begins`` (exclusive) on, at one offset
    while True:
        offset = (begins + datetime.timedelta(microseconds=1)).astimezone(local).utcoffset()
        change = _next_change(local, begins + datetime.timedelta(microseconds=1))
        went_back = _repeat_ends(local, begins + datetime.timedelta(microseconds=1))
        for t in CronSim(cron, begins.astimezone(datetime.timezone(offset))):
            t = t.astimezone(UTC)
            if change is not None and t >= change:
                break
            if fixed and went_back is not None and t < went_back:
                continue   # its wall time came before the clocks went back: it ran then
            if last is None or t > last:
                last = t
                yield t
        if change is None:
            return
        new = change.astimezone(local).utcoffset()
        if fixed and new > offset:
            # clocks went forward: a wall time in the skipped stretch runs once, at the jump
            first = next(iter(CronSim(cron, (change - datetime.timedelta(seconds=1)).astimezone(
                datetime.timezone(offset)))), None)
            if first is not None and first.astimezone(UTC) < change + (new - offset) \
                    and (last is None or change > last):
                last = change
                yield change
        begins = change - datetime.timedelta(microseconds=1)


def next_slot(schedule, tz, after):
    """The first slot strictly after ``after``, or ``None`` if there is none for fifty years."""
    far = _utc(after) + datetime.timedelta(days=366 * 50)
    return next(slots(schedule, tz, after, far), None)


def _interval_slots(interval, after, until):
    """Multiples of ``interval`` seconds since the epoch in ``(after, until]``."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=UTC)
    n = int((after - epoch).total_seconds() // interval) + 1
    while True:
        t = epoch + datetime.timedelta(seconds=n * interval)
        if t > until:
            return
        if t > after:
            yield t
        n += 1


def _utc(t):
    """An aware datetime in UTC; a naive one is refused (its meaning would be a guess)."""
    if not isinstance(t, datetime.datetime) or t.tzinfo is None:
        raise TypeError(f"slots need aware datetimes, not {t!r}")
    return t.astimezone(UTC)
