"""The epoch fence and its state file."""
import json
import os

import pytest

from nodeagent.state import STATE_FILE, EpochFence, accept_epoch, load_state, save_state


@pytest.mark.parametrize("highest, epoch, expected", [(0, 0, True), (3, 3, True), (3, 4, True), (3, 2, False)])
def test_accept_epoch(highest, epoch, expected):
    assert accept_epoch(highest, epoch) is expected


def test_fence_refuses_lower_epochs_and_survives_a_restart(tmp_path):
    fence = EpochFence(str(tmp_path))
    assert fence.admit(5)
    assert not fence.admit(4)
    again = EpochFence(str(tmp_path))
    assert again.highest == 5
    assert not again.admit(4)
    assert again.admit(5)


def test_save_state_replaces_the_file_whole_and_leaves_no_temp(tmp_path):
    save_state(str(tmp_path), {"version": 1, "epoch": 1})
    save_state(str(tmp_path), {"version": 1, "epoch": 2})
    assert os.listdir(tmp_path) == [STATE_FILE]
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"version": 1, "epoch": 2}


def test_a_crash_before_rename_keeps_the_old_state(tmp_path, monkeypatch):
    save_state(str(tmp_path), {"version": 1, "epoch": 7})

    def crash(src, dst):
        raise OSError("power lost")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_state(str(tmp_path), {"version": 1, "epoch": 8})
    assert load_state(str(tmp_path))["epoch"] == 7


def test_missing_file_is_epoch_zero(tmp_path):
    assert load_state(str(tmp_path))["epoch"] == 0


def test_unreadable_file_is_refused_with_its_name(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=STATE_FILE):
        load_state(str(tmp_path))
