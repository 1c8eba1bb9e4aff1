"""The cgroup shell (nodeagent.cgroupfs) on a stand-in cgroup2 tree in a temporary folder.

This machine's cgroup2 tree offers no memory controller, so v2 cannot run here for real: the
folder plays the mount (the kernel's own files are made by hand). The v1 hierarchy is exercised
for real, as root, by tests/integration/test_agent_isolation.py."""
import os

from nodeagent.cgroupfs import MemoryCgroups


def fake_v2(tmp_path, controllers="cpu io memory pids\n"):
    mount = tmp_path / "cgroup"
    mount.mkdir()
    (mount / "cgroup.controllers").write_text(controllers)
    (mount / "cgroup.subtree_control").write_text("")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {mount} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n")
    return mount, str(mounts)


def test_v2_parent_is_prepared_and_an_instance_gets_its_limit(tmp_path):
    mount, mounts = fake_v2(tmp_path)
    found = MemoryCgroups.probe(mounts, is_root=True)
    assert found.enforced and found.layout.kind == "v2"
    assert (mount / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (mount / "corral" / "cgroup.subtree_control").read_text() == "+memory +pids"
    procs = found.create("hello-web-1", 64 << 20)
    assert procs == str(mount / "corral" / "hello-web-1" / "cgroup.procs")
    assert (mount / "corral" / "hello-web-1" / "memory.max").read_text() == str(64 << 20)


def test_every_instance_gets_a_pids_limit_in_the_same_v2_folder(tmp_path):
    mount, mounts = fake_v2(tmp_path)
    found = MemoryCgroups.probe(mounts, is_root=True, environ={"CORRAL_AGENT_PIDS_MAX": "64"})
    assert found.pids_enforced and found.pids_max == 64
    folder = mount / "corral" / "hello-web-1"
    assert found.create_all("hello-web-1", 64 << 20) == [str(folder / "cgroup.procs")]
    assert (folder / "pids.max").read_text() == "64" and (folder / "memory.max").read_text() == str(64 << 20)
    assert found.create_all("hello-web-2", 0) == [str(mount / "corral" / "hello-web-2" / "cgroup.procs")], \
        "no memory request: still a pids limit"
    assert MemoryCgroups.probe(mounts, is_root=True, environ={}).pids_max == 4096


def test_oom_kills_are_read_from_memory_events_and_the_cgroup_removed(tmp_path):
    mount, mounts = fake_v2(tmp_path)
    found = MemoryCgroups.probe(mounts, is_root=True)
    found.create("hello-web-1", 64 << 20)
    folder = mount / "corral" / "hello-web-1"
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert found.oom_kills("hello-web-1") == 1
    for name in os.listdir(folder):  # the kernel's files vanish with the cgroup; here by hand
        os.unlink(folder / name)
    assert found.remove("hello-web-1") and not folder.exists()
    assert found.remove("hello-web-1"), "removing what is gone is fine"
    assert found.oom_kills("hello-web-1") == 0


def test_without_memory_in_cgroup2_nor_v1_nothing_is_enforced_and_nothing_written(tmp_path):
    mount, mounts = fake_v2(tmp_path, controllers="hugetlb\n")
    found = MemoryCgroups.probe(mounts, is_root=True)
    assert not found.enforced and "no cgroup memory controller" in found.reason
    assert found.create("hello-web-1", 64 << 20) is None
    assert not (mount / "corral").exists()


def test_a_refused_write_says_so_and_the_instance_runs_without_a_limit(tmp_path):
    mount, mounts = fake_v2(tmp_path)
    found = MemoryCgroups.probe(mounts, is_root=True)
    (mount / "corral" / "hello-web-1").write_text("")  # a file where the cgroup folder should go
    assert found.create("hello-web-1", 64 << 20) is None
    assert not found.enforced and "refused the memory limit of instance hello-web-1" in found.reason


def test_not_root_enforces_nothing(tmp_path):
    _, mounts = fake_v2(tmp_path)
    found = MemoryCgroups.probe(mounts, is_root=False)
    assert not found.enforced and "not run as root" in found.reason


def test_no_request_no_cgroup(tmp_path):
    mount, mounts = fake_v2(tmp_path)
    found = MemoryCgroups.probe(mounts, is_root=True)
    assert found.create("hello-web-1", 0) is None
    assert os.listdir(mount / "corral") == ["cgroup.subtree_control"]
