"""`corral doctor` judges facts, not the machine: a healthy host's facts give a clean report, and each thing
missing from them gives one problem line with its fix (the facts are built here by hand, as a machine
lacking that one thing would have them)."""
import dataclasses

import pytest

from corral.cli.diagnosis import Facts, Peer, diagnose, report

V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
V1 = ("cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,memory 0 0\n"
      "cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,pids 0 0\n")
GIB = 1024 ** 3
HEALTHY = Facts(role="node", is_root=True, python=(3, 11, 2), kernel="6.1.0-13-amd64", mounts=V2,
                controllers={"/sys/fs/cgroup": "cpuset cpu io memory hugetlb pids rdma misc"}, useradd=True,
                kernel_clock_synced=True, disks=(("/var/lib/corral", 80 * GIB, 200 * GIB),),
                peers=(Peer("reconciler", "http://10.0.0.1:7070", version="0.2.0", clock_offset=0.0),
                       Peer("bus", "tcp://10.0.0.1:7071")),
                code_schema=4, version="0.2.0")
CONTROL = dataclasses.replace(HEALTHY, role="control-plane", is_root=False,
                              ports=((7070, "a reconciler's API", None), (7071, "a reconciler's bus",
                                                                          "corral reconciler (pid 42)")),
                              peers=(Peer("store", "postgresql://corral:<redacted>@db1/corral", schema=4),))


def problems(facts):
    return [f.line() for f in diagnose(facts) if f.status == "FAIL"]


@pytest.mark.parametrize("facts", [HEALTHY, dataclasses.replace(HEALTHY, mounts=V1, controllers={}), CONTROL],
                         ids=["node-cgroup-v2", "node-cgroup-v1", "control-plane"])
def test_a_healthy_host_has_a_clean_report(facts):
    text, code = report(diagnose(facts))
    assert code == 0 and "FAIL" not in text and text.endswith("checks)")


@pytest.mark.parametrize("change,check,fix", [
    (dict(python=(3, 10, 12)), "python: 3.10.12 is older than 3.11", "install python3.11"),
    (dict(is_root=False), "root: not root", "run the agent as root"),
    (dict(pidfd_error="Function not implemented"), "pidfd: pidfd_open fails", "5.3 or newer"),
    (dict(controllers={"/sys/fs/cgroup": "cpu io pids"}), "cgroup memory: memory limits cannot be enforced",
     "boot with cgroup v2 and the memory controller"),
    (dict(mount_ns_error="Operation not permitted"), "mount namespace: a mount namespace is refused (Operation not permitted)",
     "allow unshare for root"),
    (dict(useradd=False), "useradd: not found", "apt-get install passwd"),
    (dict(disks=(("/var/lib/corral", GIB, 200 * GIB),)), "disk: 1.0 GiB free of 200.0 GiB", "free space"),
    (dict(peers=(Peer("bus", "tcp://10.0.0.1:7071", error="connection refused"),)),
     "reach bus: tcp://10.0.0.1:7071 does not answer: connection refused", "systemctl status corral-reconciler"),
    (dict(peers=(Peer("reconciler", "http://10.0.0.1:7070", version="0.4.1"),)),
     "reach reconciler: http://10.0.0.1:7070 runs corral 0.4.1, more than one minor release", "one release at a time"),
    (dict(peers=(Peer("reconciler", "http://10.0.0.1:7070", version="0.2.0", clock_offset=-42.0),)),
     "clock: http://10.0.0.1:7070 is -42.0 s from this host", "apt-get install chrony"),
], ids=["old-python", "not-root", "no-pidfd", "no-memory-controller", "no-mount-namespace", "no-useradd", "disk-full",
        "bus-unreachable", "skew", "clock"])
def test_each_missing_thing_is_one_problem_line_with_its_fix(change, check, fix):
    (line,) = problems(dataclasses.replace(HEALTHY, **change))
    assert line.startswith(f"FAIL  {check}") and fix in line.split("; fix: ")[1], line
    assert report(diagnose(dataclasses.replace(HEALTHY, **change)))[1] == 1


@pytest.mark.parametrize("change,check", [
    (dict(ports=((7070, "a reconciler's API", "nginx (pid 7)"),)), "port 7070: taken by nginx (pid 7)"),
    (dict(peers=(Peer("store", "postgresql://db1/corral", schema=5),)), "store schema: version 5, newer than"),
    (dict(peers=(Peer("store", "postgresql://db1/corral", error="could not connect"),)), "reach store"),
])
def test_control_plane_problems(change, check):
    (line,) = problems(dataclasses.replace(CONTROL, **change))
    assert line.startswith(f"FAIL  {check}") and "; fix: " in line, line


def test_an_unsynchronized_clock_with_no_peer_to_compare_is_a_note_not_a_problem():
    found = diagnose(dataclasses.replace(HEALTHY, peers=(), kernel_clock_synced=False))
    (clock,) = [f for f in found if f.check == "clock"]
    assert clock.status == "note" and report(found)[1] == 0
