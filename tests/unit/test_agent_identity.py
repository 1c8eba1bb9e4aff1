"""Who an instance's extra commands run as (nodeagent/identity.py), and the exec health check that
runs that way (nodeagent/probes.py): the instance's known identity or a refusal, never the agent's
root by default; no_new_privs always; the whole group gone at the end or at the timeout."""
import os
import time

import pytest

from nodeagent import cgroups, identity, probes, sandbox
from nodeagent.cgroupfs import MemoryCgroups
from nodeagent.health import Check
from nodeagent.users import Identity, OwnUser

APP = Identity(uid=54321, gid=54322, name="corral-hello", home="/nonexistent")


class Separate:
    """App users are on (what matters of :class:`nodeagent.users.AppUsers` here)."""

    separate = True


class Inst:
    def __init__(self, ident=None, memory=None, memory_limit=0, iid="hello-web-1"):
        self.id = iid
        self.identity = ident
        self.memory = memory
        self.memory_limit = memory_limit


def test_with_app_users_a_command_runs_as_the_instances_known_identity():
    assert identity.for_instance(Inst(APP), Separate()) == identity.RunAs(uid=54321, gid=54322)


@pytest.mark.parametrize("ident, why", [
    (None, "the user of instance hello-web-1 is not known yet"),
    (Identity(0, 0, "root", "/root"), "instance hello-web-1 would run as uid 0 gid 0: never as root"),
])
def test_with_app_users_an_unknown_or_root_identity_is_refused_never_the_agents(ident, why):
    with pytest.raises(identity.IdentityUnknown, match=f"^{why}$"):
        identity.for_instance(Inst(ident), Separate())
    assert identity.for_check(Inst(ident), Separate()) is None


@pytest.mark.parametrize("users", [None, OwnUser("/nonexistent", "/")])
def test_without_app_users_a_command_keeps_the_agents_user(users):
    assert identity.for_instance(Inst(None), users) == identity.RunAs()


def test_the_instances_cgroups_are_joined_only_while_they_exist_the_pids_one_always(tmp_path):
    memory_layout = cgroups.Layout(kind="v1", mount=str(tmp_path / "memory"))
    pids_layout = cgroups.Layout(kind="v1", mount=str(tmp_path / "pids"))
    inst = Inst(APP, memory=MemoryCgroups(memory_layout, pids_layout), memory_limit=64 << 20)
    assert identity.for_instance(inst, Separate()).cgroups == ()
    os.makedirs(cgroups.instance_dir(memory_layout, inst.id))
    os.makedirs(cgroups.instance_dir(pids_layout, inst.id))
    procs = [os.path.join(cgroups.instance_dir(layout, inst.id), "cgroup.procs") for layout in (memory_layout, pids_layout)]
    assert identity.for_instance(inst, Separate()).cgroups == tuple(procs)
    inst.memory_limit = 0   # no memory limit: its pids.max still holds an exec session's forks
    assert identity.for_instance(inst, Separate()).cgroups == (procs[1],)


class Launched:
    """A launcher whose instances live in mount namespaces of their own (it has a sandbox)."""

    sandbox = object()


def test_where_instances_have_namespaces_a_command_joins_its_instances_or_is_refused():
    inst = Inst(APP)
    inst.launcher = Launched()
    inst.proc, inst.ticks = None, None
    with pytest.raises(identity.IdentityUnknown, match="has no running process whose namespace to join"):
        identity.for_instance(inst, Separate())
    inst.proc, inst.ticks = type("Proc", (), {"pid": 4242})(), 777
    assert identity.for_instance(inst, Separate()).namespace == (4242, 777)
    assert identity.for_instance(inst, OwnUser("/nonexistent", "/")).namespace is None


def test_joining_a_namespace_whose_process_was_replaced_is_refused():
    """The namespace is opened, then the pid checked by its start time: a reused pid is caught."""
    with pytest.raises(OSError, match="is gone"):
        sandbox.join(os.getpid(), -1, lambda pid: 12345)
def exec_check(argv, timeout=5.0):
    return Check(kind="exec", target=argv, timeout=timeout)


def gone(pid):
    """No such process, or only its zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] == "Z"
    except OSError:
        return True


def wait_gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return gone(pid)


def test_an_exec_check_without_a_known_identity_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    ok, detail = probes.probe(exec_check(["touch", str(marker)]), "127.0.0.1", None, os.environ.copy(), "/")
    assert (ok, detail) == (False, "touch was not run: the instance's user is not known")
    assert not marker.exists()


def test_an_exec_check_gets_no_new_privs_even_as_the_agents_own_user():
    script = "grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status"
    assert probes.probe(exec_check(["sh", "-c", script]), "127.0.0.1", None, os.environ.copy(), "/",
                        identity.RunAs()) == (True, "sh exited with code 0")


@pytest.mark.parametrize("tail, timeout, detail", [
    ("exec sleep 60", 0.5, "sh did not finish within 0.5s"),   # at its timeout
    ("exit 0", 5.0, "sh exited with code 0"),                   # and when it is over
])
def test_an_exec_check_leaves_nothing_of_its_group_behind(tmp_path, tail, timeout, detail):
    pidfile = tmp_path / "child"
    script = f"sleep 60 & echo $! > {pidfile}; {tail}"
    ok, seen = probes.probe(exec_check(["sh", "-c", script], timeout), "127.0.0.1", None, os.environ.copy(), "/",
                            identity.RunAs())
    assert seen == detail and ok == (tail == "exit 0")
    assert wait_gone(int(pidfile.read_text())), "the check's background child was killed with its group"


def test_an_exec_check_that_cannot_enter_its_cgroup_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    run_as = identity.RunAs(cgroups=(str(tmp_path / "no-such-cgroup" / "cgroup.procs"),))
    ok, detail = probes.probe(exec_check(["touch", str(marker)]), "127.0.0.1", None, os.environ.copy(), "/", run_as)
    assert not ok and detail == ("touch could not be run (could not join the instance's cgroup and become "
                                 "the agent's user)")
    assert not marker.exists()
