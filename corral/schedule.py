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
  skipped hour, every quarter of the repeated one.
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
    # cronsim counts fixed-time jobs in naive local time, so an instant in the
    # repeated hour (fold=1) restarts the count an hour early: drop what
    # comes out at or before ``after``.
    for t in CronSim(sched.cron, after.astimezone(local)):
        t = t.astimezone(UTC)
        if t > until:
            return
        if t > after:
            yield t


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
