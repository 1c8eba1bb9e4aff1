"""Disk pressure thresholds: 10% or 2 GiB, whichever is smaller."""
import pytest

from nodeagent.disk import room_for, threshold, under_pressure

GiB = 1024 ** 3


@pytest.mark.parametrize("total, kept", [(50 * GiB, 2 * GiB), (8 * GiB, int(0.8 * GiB)), (20 * GiB, 2 * GiB)])
def test_threshold(total, kept):
    assert threshold(total) == kept


def test_pressure_and_room():
    assert under_pressure(free=GiB, total=50 * GiB) and not under_pressure(free=3 * GiB, total=50 * GiB)
    assert room_for(free=3 * GiB, total=50 * GiB, size=GiB)
    assert not room_for(free=3 * GiB, total=50 * GiB, size=GiB + 1)
