"""Where memory limits go and what is written (nodeagent.cgroups: pure)."""
import pytest

from nodeagent import cgroups
from nodeagent.cgroups import Layout, Unsupported

# This machine's kind: v1 controllers, and a hybrid cgroup2 tree offering only hugetlb.
HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
UNIFIED = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
COMBINED_V1 = "cgroup /sys/fs/cgroup/cpu,memory cgroup rw,relatime,cpu,memory 0 0\n"
NONE = "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"


@pytest.mark.parametrize("mounts, controllers, is_root, expected", [
    (HYBRID, {"/sys/fs/cgroup/unified": "hugetlb\n"}, True, Layout("v1", "/sys/fs/cgroup/memory")),
    (HYBRID, {"/sys/fs/cgroup/unified": "hugetlb memory\n"}, True, Layout("v2", "/sys/fs/cgroup/unified")),
    (UNIFIED, {"/sys/fs/cgroup": "cpuset cpu io memory hugetlb pids rdma misc\n"}, True, Layout("v2", "/sys/fs/cgroup")),
    (UNIFIED, {"/sys/fs/cgroup": None}, True, None),
    (COMBINED_V1, {}, True, Layout("v1", "/sys/fs/cgroup/cpu,memory")),
    (NONE, {}, True, None),
    (UNIFIED, {"/sys/fs/cgroup": "memory\n"}, False, None),
], ids=["hybrid-v1-memory", "hybrid-v2-offers-memory", "unified", "unified-unreadable", "combined-v1",
        "no-cgroups", "not-root"])
def test_memory_layout(mounts, controllers, is_root, expected):
    found = cgroups.memory_layout(mounts, controllers, is_root)
    if expected is None:
        assert isinstance(found, Unsupported) and found.reason
    else:
        assert found == expected


def test_not_root_says_why():
    assert "not run as root" in cgroups.memory_layout(UNIFIED, {"/sys/fs/cgroup": "memory"}, False).reason


def test_unified_root_is_preferred_over_other_cgroup2_mounts():
    mounts = "cgroup2 /run/other cgroup2 rw 0 0\n" + UNIFIED
    found = cgroups.memory_layout(mounts, {"/run/other": "memory", "/sys/fs/cgroup": "memory"}, True)
    assert found == Layout("v2", "/sys/fs/cgroup")


def test_escaped_mount_points_are_decoded():
    assert cgroups.cgroup2_mounts("cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n") == ["/mnt/my cgroups"]


@pytest.mark.parametrize("layout, present, expected", [
    (Layout("v2", "/sys/fs/cgroup"), {"memory.max", "memory.swap.max"},
     [("memory.max", "67108864"), ("memory.swap.max", "0")]),
    (Layout("v2", "/sys/fs/cgroup"), {"memory.max"}, [("memory.max", "67108864")]),
    (Layout("v1", "/sys/fs/cgroup/memory"), {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"},
     [("memory.limit_in_bytes", "67108864"), ("memory.memsw.limit_in_bytes", "67108864")]),
    (Layout("v1", "/sys/fs/cgroup/memory"), {"memory.limit_in_bytes"}, [("memory.limit_in_bytes", "67108864")]),
], ids=["v2-with-swap", "v2-no-swap-accounting", "v1-memsw", "v1"])
def test_limit_writes_count_swap_where_the_node_accounts_it(layout, present, expected):
    assert cgroups.limit_writes(layout, 64 << 20, present) == expected


def test_a_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        cgroups.limit_writes(Layout("v1", "/m"), 0, set())


def test_v2_enables_memory_for_the_children_of_the_root_and_of_the_parent():
    assert cgroups.parent_writes(Layout("v2", "/sys/fs/cgroup")) == [
        ("/sys/fs/cgroup/cgroup.subtree_control", "+memory"),
        ("/sys/fs/cgroup/corral/cgroup.subtree_control", "+memory")]
    assert cgroups.parent_writes(Layout("v1", "/sys/fs/cgroup/memory")) == []


@pytest.mark.parametrize("iid", ["../escape", "a/b", "", ".", ".."])
def test_an_instance_id_that_is_no_folder_name_is_refused(iid):
    with pytest.raises(ValueError, match="cannot name a cgroup folder"):
        cgroups.instance_dir(Layout("v1", "/sys/fs/cgroup/memory"), iid)


def test_instance_dir():
    assert cgroups.instance_dir(Layout("v1", "/sys/fs/cgroup/memory"), "hello-web-1") == \
        "/sys/fs/cgroup/memory/corral/hello-web-1"


@pytest.mark.parametrize("text, expected", [
    ("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", 2),          # v1 memory.oom_control
    ("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n", 1),  # v2 memory.events
    ("oom_kill_disable 0\nunder_oom 0\n", 0),                      # an old kernel without the count
    (None, 0),                                                     # no such file
])
def test_oom_kills(text, expected):
    assert cgroups.oom_kills(text) == expected


@pytest.mark.parametrize("n, text", [(64 << 20, "64Mi"), (3 << 29, "1.5Gi"), (512 << 10, "512Ki"), (100, "100")])
def test_format_bytes(n, text):
    assert cgroups.format_bytes(n) == text


def test_oom_message():
    assert cgroups.oom_message(64 << 20, "killed by SIGKILL") == \
        "OOMKilled: went over its memory limit of 64Mi (killed by SIGKILL)"


@pytest.mark.parametrize("resources, expected", [
    (None, 0), ({}, 0), ({"cpu": 0.5}, 0), ({"memory": 64 << 20}, 64 << 20), ({"memory": 0}, 0),
])
def test_request_bytes(resources, expected):
    assert cgroups.request_bytes(resources) == expected


@pytest.mark.parametrize("value", ["64Mi", -1, 1.5, True, [1]])
def test_a_memory_request_that_is_not_bytes_is_refused_in_one_sentence(value):
    with pytest.raises(ValueError, match="is not a whole number of bytes"):
        cgroups.request_bytes({"memory": value})
