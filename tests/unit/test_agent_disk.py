"""Disk pressure thresholds: 10% or 2 GiB, whichever is smaller."""
import pytest

from nodeagent.disk import evictions, room_for, threshold, under_pressure

GiB = 1024 ** 3


@pytest.mark.parametrize("total, kept", [(50 * GiB, 2 * GiB), (8 * GiB, int(0.8 * GiB)), (20 * GiB, 2 * GiB)])
def test_threshold(total, kept):
    assert threshold(total) == kept


def test_pressure_and_room():
    assert under_pressure(free=GiB, total=50 * GiB) and not under_pressure(free=3 * GiB, total=50 * GiB)
    assert room_for(free=3 * GiB, total=50 * GiB, size=GiB)
    assert not room_for(free=3 * GiB, total=50 * GiB, size=GiB + 1)


def test_evictions_go_least_recently_used_first_and_only_as_far_as_needed():
    images = [("new", 30, (("env", "e1"), ("code", "c3"))), ("old", 10, (("env", "e1"), ("code", "c1"))),
              ("mid", 20, (("env", "e2"), ("code", "c2")))]
    sizes = {("env", "e1"): GiB, ("code", "c1"): GiB, ("env", "e2"): GiB, ("code", "c2"): GiB, ("code", "c3"): GiB}
    # 100 GiB disk keeps 2 GiB free; 2.5 GiB free and 1.5 GiB needed: 1 GiB must be freed
    assert evictions(images, sizes, set(), 2.5 * GiB, 100 * GiB, 1.5 * GiB) == (["old"], [("code", "c1")], True)
    # e1 is shared with "new": only once both go is it freed
    assert evictions(images, sizes, set(), 2.5 * GiB, 100 * GiB, 3.5 * GiB) == (
        ["old", "mid"], [("code", "c1"), ("env", "e2"), ("code", "c2")], True)


def test_evictions_keep_layers_in_use_and_evict_nothing_when_it_cannot_fit():
    images = [("old", 10, (("env", "e1"), ("code", "c1")))]
    sizes = {("env", "e1"): GiB, ("code", "c1"): GiB}
    assert evictions(images, sizes, {("env", "e1")}, 2.5 * GiB, 100 * GiB, 1.5 * GiB) == (["old"], [("code", "c1")], True)
    assert evictions(images, sizes, {("env", "e1")}, 2.5 * GiB, 100 * GiB, 2.0 * GiB) == ([], [], False)
    assert evictions(images, sizes, set(), 10 * GiB, 100 * GiB, GiB) == ([], [], True), "room already: nothing goes"
