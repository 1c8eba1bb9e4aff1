"""Exec health checks and ``corral exec`` sessions are app code: they must run exactly as the app's
own process does, never as the agent.

A spec author writes the probe's argv, and an exec session runs whatever the
user types: on a root agent each must be the app's user, with no supplementary
groups, no capabilities, ``no_new_privs``, inside the app's cgroup. Each
command here records what it really is (``/proc/self/status``, the ids, its
membership of the instance's ``cgroup.procs``), deployed through the real agent.
And when the agent does not know who an instance runs as (a process it
adopted before reading its spec again, or one that exited under the lookup),
an exec session is refused: it never falls back to the agent's own root.
Root only (app users and cgroups), as in CI.
"""
import corral.green

corral.green.patch()

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from corral import image_layout  # noqa: E402
from nodeagent import cgroups, users  # noqa: E402
from nodeagent.cgroupfs import MemoryCgroups  # noqa: E402
from reconciler.session_relay import Relay  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    IMAGE, NODE, WAIT, Reconciler, agent, assignment, build_image_archive, key_file, running, wait_for)
from tests.integration.test_agent_isolation import (  # noqa: E402,F401  (fixtures)
    SYSTEM_PYTHON, fresh_app, memory_layout, open_root, system_image_server)
from tests.integration.test_agent_supervision import from_new_agent  # noqa: E402
from tests.integration.test_logs_exec_bus import FakeInstance, pair  # noqa: E402,F401  (fixture)
from tests.support import need, need_root, serve_bytes  # noqa: E402


@pytest.fixture(autouse=True)
def as_root():
    """Every attack here needs app users (and cgroups) to be real: root."""
    need_root("app users and cgroups need root (CI runs as root)")


# What the command is: its ids, groups, capabilities, no_new_privs, and whether it is in the
# cgroup whose cgroup.procs is argv[2]. argv[1] "-": printed; else written to $HOME/<argv[1]>.
RECORD = textwrap.dedent("""\
    import json, os, sys
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    procs = sys.argv[2] if len(sys.argv) > 2 else None
    seen = {"resuid": list(os.getresuid()), "resgid": list(os.getresgid()), "groups": os.getgroups(),
            "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
            "no_new_privs": status["NoNewPrivs"].strip(),
            "in_cgroup": bool(procs) and str(os.getpid()) in open(procs).read().split()}
    text = json.dumps(seen)
    if sys.argv[1] == "-":
        print(text)
    else:
        path = os.path.join(os.environ["HOME"], sys.argv[1])
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
""")

SERVE = ["python", "-m", "http.server", "$PORT", "--bind", "127.0.0.1"]
NO_CAPS = "0" * 16


def assert_is_the_app(seen, uid, gid):
    """``seen`` (what RECORD found) is the app's user and nothing more."""
    assert seen["resuid"] == [uid] * 3 and seen["resgid"] == [gid] * 3, f"not the app's user: {seen}"
    assert seen["groups"] == [], f"supplementary groups kept: {seen}"
    assert (seen["cap_eff"], seen["cap_prm"]) == (NO_CAPS, NO_CAPS), f"capabilities kept: {seen}"
    assert seen["no_new_privs"] == "1", f"no_new_privs not set: {seen}"


class StreamingReconciler(Reconciler):
    """The fake reconciler with a stream relay: it opens exec sessions on the agent over the bus."""

    def __init__(self, key):
        super().__init__(key)
        self.relay = Relay(self.server.send, lambda node: 0.0, heartbeat_timeout=5.0, keepalive=0.5,
                           open_timeout=5.0)

    def _on_message(self, peer, msg):
        if msg.type in Relay.types:
            self.relay.on_message(peer, msg)
        else:
            super()._on_message(peer, msg)

    def exec(self, iid, argv, tty=False):
        """Run ``argv`` in instance ``iid`` on pipes (or a pty); ``(output text, end item)``."""
        session = self.relay.open(NODE, "exec_open", {"instance": iid, "argv": argv, "tty": tty}, "exec")
        return collect(session)


@pytest.fixture
def reconciler(key_file):
    """This module's reconciler (the agent fixture connects to it): one that can open exec sessions."""
    from corral.wire.keys import read_key
    rec = StreamingReconciler(read_key(key_file))
    yield rec
    rec.close()


def collect(session, timeout=WAIT):
    """The output and the end of an exec session."""
    got, deadline = [], time.monotonic() + timeout
    for item in session.items():
        assert time.monotonic() < deadline, f"exec session still going after {timeout}s: {got[-3:]}"
        if item:
            got.append(item)
        if "end" in item:
            break
    out = b"".join(base64.b64decode(i["out"]) for i in got if "out" in i).decode()
    return out, got[-1]


def app_ids(app):
    entry = pwd.getpwnam(users.user_name(app))
    return entry.pw_uid, entry.pw_gid


def procs_file(layout, iid):
    return os.path.join(cgroups.instance_dir(layout, iid), "cgroup.procs")


def test_an_exec_health_check_runs_as_the_app_with_no_groups_caps_or_new_privs_in_its_cgroup(
        agent, reconciler, system_image_server, open_root, fresh_app):
    layout = memory_layout()
    handle = agent(root=open_root)
    health = {"exec": ["python", "-c", RECORD, "probe.json", procs_file(layout, "who-web-1")],
              "interval": 0.5, "timeout": 10.0, "failures": 3, "initialDelay": 0}
    reconciler.assign([assignment("who-web-1", system_image_server, SERVE, app=fresh_app, health=health,
                                  resources={"memory": 128 << 20})], epoch=1)
    wait_for("ready by its exec check", lambda: (i := running(reconciler, "who-web-1")) and i["ready"])
    uid, gid = app_ids(fresh_app)
    record = handle.data_dir / "home" / users.user_name(fresh_app) / "probe.json"
    seen = json.loads(record.read_text())
    assert_is_the_app(seen, uid, gid)
    assert seen["in_cgroup"], "the check runs inside the instance's memory cgroup"
    assert record.stat().st_uid == uid


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "pty"])
def test_an_exec_session_runs_as_the_app_with_no_groups_caps_or_new_privs_in_its_cgroup(
        agent, reconciler, system_image_server, open_root, fresh_app, tty):
    layout = memory_layout()
    agent(root=open_root)
    reconciler.assign([assignment("who-web-2", system_image_server, SERVE, app=fresh_app,
                                  resources={"memory": 128 << 20})], epoch=1)
    wait_for("ready", lambda: (i := running(reconciler, "who-web-2")) and i["ready"])
    out, end = reconciler.exec("who-web-2", ["python", "-c", RECORD, "-", procs_file(layout, "who-web-2")], tty=tty)
    assert end.get("exit_code") == 0, (end, out)
    seen = json.loads(out)
    assert_is_the_app(seen, *app_ids(fresh_app))
    assert seen["in_cgroup"], "the session runs inside the instance's memory cgroup"


class Gate(dict):
    """Archives behind a gate: while it is shut, a download waits (the agent is left fetching)."""

    def __init__(self, archives):
        super().__init__(archives)
        self.open = threading.Event()
        self.open.set()

    def get(self, key, default=None):
        self.open.wait()
        return super().get(key, default)


@pytest.fixture
def gated_image_server():
    """The isolation tests' image (its python the system's) served behind a :class:`Gate`; yields
    ``(image server, gate)``, the image server as :func:`serve_archives` yields it."""
    if SYSTEM_PYTHON is None:
        need("root", "these tests need a system python3 that other users can run")
    archives = build_image_archive(python=SYSTEM_PYTHON)
    gate = Gate({f"{kind}.tar": data for kind, data in archives.items()})
    server = serve_bytes(gate)
    yield (server.url, {kind: hashlib.sha256(data).hexdigest() for kind, data in archives.items()}, []), gate
    gate.open.set()
    server.shutdown()
    server.server_close()


def test_an_exec_session_into_an_instance_whose_user_is_not_known_yet_is_refused(
        agent, reconciler, gated_image_server, open_root, fresh_app):
    """A restarted agent adopts the running process first and learns its user only once the
    image is ready again: until then an exec session has no identity to run as, and must not run."""
    image_server, gate = gated_image_server
    first = agent(root=open_root)
    reconciler.assign([assignment("who-web-3", image_server, SERVE, app=fresh_app)], epoch=1)
    pid = wait_for("ready", lambda: (i := running(reconciler, "who-web-3")) and i["ready"] and i)["pid"]
    started_at = reconciler.latest()["started_at"]
    first.proc.kill()
    first.proc.wait(timeout=WAIT)
    # the new agent finds the env layer unfinished and fetches it again, behind the shut gate
    gate.open.clear()
    try:
        env_layer = assignment("x", image_server, SERVE)["artifact"]["layers"][0]
        os.unlink(image_layout.layer_marker_path(str(first.images_dir), "env", env_layer["id"]))
        os.unlink(os.path.join(image_layout.image_dir(str(first.images_dir), IMAGE), image_layout.IMAGE_MARKER))
        agent(root=open_root)
        wait_for("the process adopted while its image is fetched",
                 lambda: (r := from_new_agent(reconciler, started_at)) and r["instances"]
                 and r["instances"][0]["pid"] == pid)
        out, end = reconciler.exec("who-web-3", ["python", "-c", RECORD, "-"])
        assert end["error"] and end["end"] == "exec refused: the user of instance who-web-3 is not known yet", \
            (end, out)
        assert out == ""
    finally:
        gate.open.set()


def test_an_exec_session_whose_process_exits_under_it_is_refused_never_run_as_the_agent(pair):
    """The lookup raced with the instance's exit (its pid was alive when checked, gone when its
    user was looked for): with app users on and no known identity, the session is refused."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    inst = FakeInstance(gone.pid)   # alive a moment ago: its pid is what the agent last knew
    inst.identity = None
    pair.agent.instances[inst.id] = inst
    pair.agent.users = users.AppUsers(pair.agent.data_dir)
    session = pair.relay.open(NODE, "exec_open", {"instance": inst.id, "argv": ["python", "-c", RECORD, "-"],
                                                  "tty": False}, "exec")
    out, end = collect(session)
    assert out == "", f"the command ran: {out}"
    assert end["error"] and end["end"] == f"exec refused: the user of instance {inst.id} is not known yet"


# The app leaves a marker in its own /tmp, then serves.
MARK_AND_SERVE = ["sh", "-c", "echo mine > /tmp/marker-$CORRAL_INSTANCE && exec python -m http.server $PORT --bind 127.0.0.1"]

# What an exec command sees: the app's /tmp marker, the agent's instance table, and whether it is in
# the pids cgroup whose cgroup.procs is argv[2].
LOOK = textwrap.dedent("""\
    import json, os, sys
    def attempt(fn):
        try:
            return fn()
        except OSError as e:
            return type(e).__name__
    print(json.dumps({"marker": attempt(lambda: open("/tmp/marker-" + os.environ["CORRAL_INSTANCE"]).read().strip()),
                      "instances": attempt(lambda: open(os.path.join(sys.argv[1], "instances.json")).read()),
                      "cwd": os.getcwd(),
                      "in_pids": str(os.getpid()) in open(sys.argv[2]).read().split()}))
""")


@pytest.fixture(autouse=True)
def no_marker_on_the_node():
    """The app's /tmp is its own: its marker never lands in the node's."""
    markers = [f"/tmp/marker-look-web-{n}" for n in (1, 2)]
    for m in markers:
        if os.path.exists(m):
            os.unlink(m)
    yield
    assert not [m for m in markers if os.path.exists(m)], "the app wrote into the node's /tmp"


def pids_layout():
    found = MemoryCgroups.probe()
    if found.pids_layout is None:
        need("root", f"no pids limits on this machine: {found.pids_reason}")
    return found.pids_layout


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "pty"])
def test_an_exec_session_joins_the_instances_namespace_and_its_pids_cgroup(
        agent, reconciler, system_image_server, open_root, fresh_app, tty):
    """It sees what the app sees (its private /tmp, none of the agent's folders) from the app's
    folder, and a fork bomb typed into it stays under the instance's pids.max (no memory request)."""
    layout = pids_layout()
    handle = agent(root=open_root)
    reconciler.assign([assignment("look-web-1", system_image_server, MARK_AND_SERVE, app=fresh_app)], epoch=1)
    wait_for("ready", lambda: (i := running(reconciler, "look-web-1")) and i["ready"])
    out, end = reconciler.exec("look-web-1", ["python", "-c", LOOK, str(handle.data_dir),
                                              procs_file(layout, "look-web-1")], tty=tty)
    assert end.get("exit_code") == 0, (end, out)
    seen = json.loads(out)
    assert seen["marker"] == "mine", f"the session does not see the app's /tmp: {seen}"
    assert seen["instances"] == "FileNotFoundError", f"the agent's instance table is there: {seen}"
    assert seen["cwd"] == os.path.realpath(image_layout.code_dir(str(handle.images_dir), IMAGE)), seen
    assert seen["in_pids"], f"the session is outside the instance's pids cgroup: {seen}"


def test_an_exec_health_check_sees_the_apps_tmp(agent, reconciler, system_image_server, open_root, fresh_app):
    agent(root=open_root)
    health = {"exec": ["test", "-f", "/tmp/marker-look-web-2"], "interval": 0.5, "timeout": 10.0,
              "failures": 3, "initialDelay": 0}
    reconciler.assign([assignment("look-web-2", system_image_server, MARK_AND_SERVE, app=fresh_app,
                                  health=health)], epoch=1)
    wait_for("ready by a check that finds the app's /tmp marker",
             lambda: (i := running(reconciler, "look-web-2")) and i["ready"])
