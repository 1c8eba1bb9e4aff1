"""When an app's services are backed up on schedule: a purely computational function with no side-effects.

``spec.backups.schedule`` is ``daily``, ``hourly``, or anything
:func:`corral.schedule.slots` reads (a cron expression such as ``0 3 * * *``, an
``@`` alias, ``every 6h``), in UTC. Each slot is backed up once: the backup's
record carries its slot, and the next due slot is looked for after the last
one recorded, so a leader that takes over finds done what its predecessor
recorded. Slots missed while no leader could act are one backup, of the newest.
"""
import datetime

from corral.schedule import slots
from corral.spec.scheduled import backup_schedule

UTC = datetime.timezone.utc


def slot_text(t):
    """A slot as it is recorded: ``2026-12-03T03:00:00Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_time(text):
    """The UNIX time of a recorded slot."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def due_slot(schedule, since, now):
    """``(slot text, slots passed over)`` of the newest slot of ``schedule`` in ``(since, now]`` (UNIX times),
    or ``(None, 0)`` when none is due."""
    newest, count = None, 0
    for t in slots(backup_schedule(schedule), "UTC", datetime.datetime.fromtimestamp(since, UTC),
                   datetime.datetime.fromtimestamp(now, UTC)):
        newest, count = t, count + 1
    return (slot_text(newest), count - 1) if newest is not None else (None, 0)
