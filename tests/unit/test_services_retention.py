"""The keep policy of backups, by table."""
import datetime

import pytest

from services.retention import to_remove


def at(day, hour=3):
    return datetime.datetime(2026, 12, day, hour, tzinfo=datetime.timezone.utc).timestamp()


DAILY = [(f"d{day:02d}", at(day), day != 9) for day in range(1, 11)]   # the 9th failed its verification


@pytest.mark.parametrize("backups, keep, removed", [
    (DAILY, {}, []),
    (DAILY, {"daily": 0}, []),
    (DAILY, {"daily": 3}, ["d01", "d02", "d03", "d04", "d05", "d06", "d09"]),
    (DAILY, {"last": 2}, ["d01", "d02", "d03", "d04", "d05", "d06", "d07", "d09"]),
    (DAILY, {"daily": 2, "weekly": 2}, ["d01", "d02", "d03", "d04", "d05", "d07", "d09"]),  # weeks 50 (10th), 49 (6th)
    ([("a", at(1, 1), True), ("b", at(1, 2), True), ("c", at(1, 23), True)], {"daily": 1}, ["a", "b"]),
    ([("a", at(1, 1), True), ("b", at(1, 2), True)], {"hourly": 5}, []),
    ([("a", at(1), True), ("b", at(2), False)], {"last": 1}, []),       # the newest failed: it stays, as a sign
    ([("a", at(1), False), ("b", at(2), False)], {"last": 1}, []),      # nothing verified: nothing goes
    ([("a", at(1), True), ("b", at(2), True)], {"monthly": 1}, ["a"]),
], ids=["no-policy", "zero-counts", "daily-worked-example", "last", "daily-and-weekly", "newest-of-the-day",
        "hourly", "newest-failed-stays", "none-verified", "monthly"])
def test_to_remove(backups, keep, removed):
    assert to_remove(backups, keep) == removed
