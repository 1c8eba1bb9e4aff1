"""The instance table on disk, and knowing a process by pid and start time."""
import json
import os
import subprocess
import sys
import time

import pytest

from nodeagent import state
from nodeagent.process import EXIT_UNKNOWN, Launcher, start_ticks


def test_the_table_round_trips_and_a_missing_one_is_empty(tmp_path):
    assert state.load_table(str(tmp_path)) == {}
    state.save_table(str(tmp_path), state.table_text({"a": {"pid": 5, "ticks": 9}}))
    assert state.load_table(str(tmp_path)) == {"a": {"pid": 5, "ticks": 9}}


def test_a_damaged_table_refuses_to_start_naming_the_file(tmp_path):
    (tmp_path / state.TABLE_FILE).write_text('{"instances": ')
    with pytest.raises(ValueError, match=r"instances\.json cannot be read"):
        state.load_table(str(tmp_path))


def test_a_failed_write_leaves_the_old_table_whole_and_no_temp_file(tmp_path, monkeypatch):
    state.save_table(str(tmp_path), state.table_text({"a": {}}))

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        state.save_table(str(tmp_path), state.table_text({"b": {}}))
    assert json.loads((tmp_path / state.TABLE_FILE).read_text())["instances"] == {"a": {}}
    assert os.listdir(tmp_path) == [state.TABLE_FILE]


def test_a_process_is_adopted_only_with_its_start_time():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = start_ticks(child.pid)
        assert ticks is not None
        launcher = Launcher()
        assert launcher.adopt(child.pid, ticks + 1) is None, "a recycled pid must not be adopted"
        adopted = launcher.adopt(child.pid, ticks)
        assert adopted.poll() is None
        child.kill()
        child.wait()
        assert adopted.poll() == EXIT_UNKNOWN
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_zombie_has_no_start_time():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline, state = time.monotonic() + 30, None
        while state != "Z":
            assert time.monotonic() < deadline, f"the child did not end in 30 s (its state is still {state!r})"
            time.sleep(0.01)
            with open(f"/proc/{child.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        assert start_ticks(child.pid) is None
    finally:
        child.kill()
        child.wait()
