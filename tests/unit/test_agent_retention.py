"""Log folders of forgotten instances (nodeagent.retention), and the agent's held ids."""
import os

import pytest

from nodeagent import retention
from nodeagent.agent import Agent
from nodeagent.cgroupfs import MemoryCgroups
from nodeagent.cgroups import Layout, Unsupported
from nodeagent.users import AppUsers, OwnUser

DAY = 24 * 3600.0


@pytest.mark.parametrize("folders, held, expected", [
    ({"old": 0.0, "new": 9 * DAY}, set(), ["old"]),
    ({"old": 0.0}, {"old"}, []),
    ({"edge": 3 * DAY}, set(), []),            # exactly the retention: not yet
    ({"a": 0.0, "b": 1.0, "c": 0.5}, {"b"}, ["a", "c"]),
], ids=["old-goes-new-stays", "held-stays-however-old", "at-the-limit", "several"])
def test_forgotten(folders, held, expected):
    assert retention.forgotten(folders, held, now=10 * DAY - 4 * DAY, retention=3 * DAY) == expected


def make_folder(logs, name, mtime):
    folder = logs / name
    folder.mkdir(parents=True)
    (folder / "output.log").write_text("x\n")
    for path in (folder / "output.log", folder):
        os.utime(path, (mtime, mtime))
    return folder


def test_a_recent_file_keeps_an_old_folder(tmp_path):
    folder = make_folder(tmp_path, "i-1", 1000.0)
    os.utime(folder / "output.log", (5000.0, 5000.0))
    assert retention.last_write(str(folder)) == 5000.0


def test_sweep_deletes_only_forgotten_folders(tmp_path):
    make_folder(tmp_path, "gone-1", 1000.0)
    make_folder(tmp_path, "held-1", 1000.0)
    make_folder(tmp_path, "recent-1", 9000.0)
    (tmp_path / "stray-file").write_text("")
    assert retention.sweep(str(tmp_path), {"held-1"}, now=10000.0, retention=3000.0) == ["gone-1"]
    assert sorted(os.listdir(tmp_path)) == ["held-1", "recent-1", "stray-file"]
    assert retention.sweep(str(tmp_path / "nothing-here"), set(), 10000.0, 1.0) == []


def make_agent(tmp_path, **kwargs):
    return Agent(name="node-1", data_dir=str(tmp_path), images_dir=str(tmp_path / "images"), labels={},
                 address="127.0.0.1", heartbeat=1.0, send=lambda *a: None, parent_env={"PATH": "/bin"},
                 clock=lambda: 10 * DAY, log_retention=DAY, **kwargs)


def test_the_agent_never_sweeps_an_assigned_or_tabled_instance(tmp_path):
    agent = make_agent(tmp_path)
    for name in ("assigned-1", "tabled-1", "forgotten-1"):
        make_folder(tmp_path / "logs", name, 0.0)
    agent.assigned = [{"id": "assigned-1"}]
    agent.records = {"tabled-1": {}}
    assert agent.sweep_logs() == ["forgotten-1"]
    assert sorted(os.listdir(tmp_path / "logs")) == ["assigned-1", "tabled-1"]


@pytest.mark.parametrize("users, memory, expected", [
    ("own", None, ["MemoryLimitsNotEnforced", "AppUsersNotEnforced"]),
    ("app", MemoryCgroups(Unsupported("no controller")), ["MemoryLimitsNotEnforced"]),
    ("app", MemoryCgroups(Layout("v1", "/sys/fs/cgroup/memory")), []),
], ids=["nothing-enforced", "users-only", "both"])
def test_the_conditions_say_what_is_not_enforced(tmp_path, users, memory, expected):
    who = OwnUser(str(tmp_path), "/") if users == "own" else AppUsers(str(tmp_path))
    agent = make_agent(tmp_path, users=who, memory=memory)
    (tmp_path / "images").mkdir()
    assert [c for c in agent.conditions({}) if c != "DiskPressure"] == expected
