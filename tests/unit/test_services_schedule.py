"""Backup schedules: which slot is due, by table."""
import datetime

import pytest

from services.schedule import due_slot, slot_time


def t(day, hour=0, minute=0, second=0):
    return datetime.datetime(2026, 12, day, hour, minute, second, tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize("schedule, since, now, expected", [
    ("daily", t(3, 1), t(3, 23), (None, 0)),
    ("daily", t(3, 1), t(4, 0), ("2026-12-04T00:00:00Z", 0)),
    ("daily", t(3, 1), t(6, 5), ("2026-12-06T00:00:00Z", 2)),        # an outage: one backup, of the newest
    ("hourly", t(3, 1), t(3, 1, 59), (None, 0)),
    ("hourly", t(3, 1), t(3, 3, 1), ("2026-12-03T03:00:00Z", 1)),
    ("0 3 * * *", t(3, 3), t(4, 2, 59), (None, 0)),                   # the slot at `since` was done
    ("0 3 * * *", t(3, 3), t(4, 3), ("2026-12-04T03:00:00Z", 0)),
    ("every 2s", t(3, 0, 0, 4), t(3, 0, 0, 7), ("2026-12-03T00:00:06Z", 0)),
], ids=["not-yet", "at-midnight", "outage", "hourly-not-yet", "hourly", "cron-done", "cron-due", "every-2s"])
def test_due_slot(schedule, since, now, expected):
    assert due_slot(schedule, since, now) == expected


def test_a_slot_is_never_due_twice():
    slot, _ = due_slot("hourly", t(3, 1), t(3, 5, 30))
    assert due_slot("hourly", slot_time(slot), t(3, 5, 59)) == (None, 0)
