"""An app's process is contained, through the real agent as root: it runs as its own user with
no supplementary groups, no capability (effective, permitted, ambient or in its bounding set),
``no_new_privs`` and a private /tmp; a fork bomb fails inside its own cgroup's ``pids.max``, a
memory hog is OOM-killed by its own limit and said to be, and in both cases the node keeps
reporting and another app keeps serving. Root only (CI runs as root)."""
import corral.green

corral.green.patch()

import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import pwd  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from nodeagent import cgroups, users  # noqa: E402
from nodeagent.cgroupfs import MemoryCgroups  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    WAIT, agent, assignment, key_file, reconciler, running, wait_for)
from tests.integration.test_agent_isolation import (  # noqa: E402,F401  (fixtures)
    app_pid, app_with_a_fresh_user, fresh_app, ids_of, kill_processes_of, system_image_server)
from tests.support import need, need_root  # noqa: E402


@pytest.fixture(autouse=True)
def as_root():
    """Every test here makes app users and cgroups: it needs root."""
    need_root("app users, cgroups and mount namespaces need root (CI runs as root)")


@pytest.fixture
def open_root():
    """A folder every user can pass (pytest's own is root's alone, which turns app users off):
    the agent's data and images go under it."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="corral-adversarial-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["/var/tmp", "/tmp"])
def hunted_root(request):
    """:func:`open_root` outside /tmp, and under it: there the instance's fresh /tmp covers the
    agent's folders, and its own are bound back into it."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="corral-hunted-", dir=request.param))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def other_app():
    """A second app (another user) that must not notice what the first one does."""
    yield from app_with_a_fresh_user("bystander")


# What the app's own process is, from the inside; then it stays up.
SELF = ("import os, time\n"
        "st = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "print('status', *[st[k].strip().replace('\\t', ',') or '-' for k in "
        "('Uid', 'Gid', 'Groups', 'NoNewPrivs', 'CapEff', 'CapPrm', 'CapAmb', 'CapBnd')], flush=True)\n"
        "marker = '/tmp/corral-private-' + os.environ['CORRAL_INSTANCE']\n"
        "open(marker, 'w').write('mine')\n"
        "print('tmp', ','.join(sorted(os.listdir('/tmp'))), flush=True)\n"
        "time.sleep(600)\n")

# Forks at most 200 children, each of which becomes `sleep 120`, counting the forks the kernel refused.
BOMB = ("import os, time\n"
        "made = refused = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        refused += 1\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            os.execv('/bin/sleep', ['sleep', '120'])\n"
        "        finally:\n"
        "            os._exit(0)\n"
        "    made += 1\n"
        "print('bomb made', made, 'refused', refused, flush=True)\n"
        "time.sleep(600)\n")

HOG = "x = bytearray(256 << 20)\nprint('not killed', flush=True)\n"

SERVE = ["python", "-m", "http.server", "$PORT", "--bind", "127.0.0.1"]


def log_text(handle, iid):
    path = handle.data_dir / "logs" / iid / "output.log"
    return path.read_text() if path.exists() else ""


def out_line(handle, iid, word):
    """The text of the app's first ``out`` line that starts with ``word``, once there is one."""
    def find():
        for line in log_text(handle, iid).splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1] == "out" and parts[2].startswith(word + " "):
                return parts[2]
        return None
    return wait_for(f"{iid}'s '{word}' line", find)


def reports_keep_coming(reconciler, count=5):
    """The agent still reports: ``count`` more reports come (heartbeats every 0.2 s here)."""
    seen = len(reconciler.reports)
    wait_for(f"{count} more reports from the agent", lambda: len(reconciler.reports) >= seen + count)


def serves(inst):
    return requests.get(f"http://127.0.0.1:{inst['port']}/", timeout=5).status_code == 200


def test_the_app_has_its_user_no_groups_no_capabilities_no_new_privs_and_a_private_tmp(
        agent, reconciler, system_image_server, open_root, fresh_app, request):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        need("root", "this kernel refuses a mount namespace (unshare -m), so there is no private /tmp to test")
    host_marker = pathlib.Path("/tmp/corral-private-self-web-1")
    host_marker.unlink(missing_ok=True)   # left by a run without a private /tmp
    request.addfinalizer(lambda: host_marker.unlink(missing_ok=True))
    handle = agent(root=open_root)
    reconciler.assign([assignment("self-web-1", system_image_server, ["python", "-c", SELF], port=False,
                                  app=fresh_app)], epoch=1)
    inst = wait_for("running", lambda: running(reconciler, "self-web-1"))
    entry = pwd.getpwnam(users.user_name(fresh_app))
    uid, gid = str(entry.pw_uid), str(entry.pw_gid)
    status = out_line(handle, "self-web-1", "status").split()[1:]
    fields = dict(zip(("Uid", "Gid", "Groups", "NoNewPrivs", "CapEff", "CapPrm", "CapAmb", "CapBnd"), status))
    assert fields["Uid"] == ",".join([uid] * 4) and fields["Gid"] == ",".join([gid] * 4), fields
    assert fields["Groups"] == "-", f"no supplementary groups: {fields}"
    assert fields["NoNewPrivs"] == "1", fields
    assert {fields[k] for k in ("CapEff", "CapPrm", "CapAmb", "CapBnd")} == {"0000000000000000"}, fields
    for pid in (inst["pid"], app_pid(inst["pid"])):   # the capture process too, seen from outside
        with open(f"/proc/{pid}/status") as f:
            outside = dict(line.split(":", 1) for line in f)
        assert outside["NoNewPrivs"].strip() == "1" and outside["CapEff"].strip() == "0000000000000000"
        assert outside["Groups"].strip() == "" and ids_of(pid) == (entry.pw_uid, entry.pw_gid)
    assert out_line(handle, "self-web-1", "tmp") == "tmp corral-private-self-web-1", "a fresh /tmp of its own"
    assert not host_marker.exists(), "its /tmp is not the node's"


def pids_mount():
    """Where this machine's pids controller is mounted: ``(mount point, "v1" | "v2")``, or None."""
    with open("/proc/self/mounts") as f:
        mounts = cgroups.parse_mounts(f.read())
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "pids" in options:
            return point, "v1"
    for point, fstype, _ in mounts:
        try:
            with open(os.path.join(point, "cgroup.controllers")) as f:
                if fstype == "cgroup2" and "pids" in f.read().split():
                    return point, "v2"
        except OSError:
            pass
    return None


def pids_cgroup(pid, mount):
    """The folder of the pids cgroup ``pid`` is in, read from ``/proc/<pid>/cgroup`` (not from the agent)."""
    point, kind = mount
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (kind == "v1" and "pids" in controllers.split(",")) or (kind == "v2" and controllers == ""):
                return point.rstrip("/") + path
    return None


def test_a_fork_bomb_fails_inside_its_own_pids_limit_and_the_node_and_another_app_go_on(
        agent, reconciler, system_image_server, open_root, fresh_app, other_app, monkeypatch):
    mount = pids_mount()
    if mount is None:
        need("root", "no cgroup pids controller is mounted on this machine")
    monkeypatch.setenv("CORRAL_AGENT_PIDS_MAX", "32")   # the agent started below inherits it
    handle = agent(root=open_root)
    bystander = assignment("calm-web-1", system_image_server, SERVE, app=other_app)
    reconciler.assign([bystander], epoch=1)
    calm = wait_for("the bystander ready", lambda: (i := running(reconciler, "calm-web-1")) and i["ready"] and i)
    reconciler.assign([bystander, assignment("bomb-1", system_image_server, ["python", "-c", BOMB], port=False,
                                             app=fresh_app)], epoch=1)
    bomb = wait_for("the bomb running", lambda: running(reconciler, "bomb-1"))
    words = out_line(handle, "bomb-1", "bomb").split()
    made, refused = int(words[2]), int(words[4])
    assert refused > 0 and made < 32, f"the kernel refused forks past pids.max 32: {words}"
    folder = pids_cgroup(app_pid(bomb["pid"]), mount)
    assert folder != pids_cgroup(bomb["pid"], mount), "the app has a pids cgroup of its own, the capture process not"
    assert open(os.path.join(folder, "pids.max")).read().strip() == "32"
    assert int(open(os.path.join(folder, "pids.current")).read()) <= 32
    reports_keep_coming(reconciler)
    again = running(reconciler, "calm-web-1")
    assert again and again["pid"] == calm["pid"] and serves(again), "the other app did not notice"
    assert subprocess.run(["true"]).returncode == 0, "the node can still start a process"
    reconciler.assign([bystander], epoch=1)
    wait_for("the bomb stopped and forgotten", lambda: reconciler.instance("bomb-1") is None)
    wait_for("its cgroup removed", lambda: not os.path.exists(folder))


def test_a_memory_hog_is_oom_killed_by_its_own_limit_and_the_node_and_another_app_go_on(
        agent, reconciler, system_image_server, open_root, fresh_app, other_app):
    found = MemoryCgroups.probe()
    if not found.enforced:
        need("root", f"no memory limits on this machine: {found.reason}")
    agent(root=open_root)
    bystander = assignment("calm-web-1", system_image_server, SERVE, app=other_app)
    reconciler.assign([bystander], epoch=1)
    calm = wait_for("the bystander ready", lambda: (i := running(reconciler, "calm-web-1")) and i["ready"] and i)
    reconciler.assign([bystander, assignment("hog-1", system_image_server, ["python", "-c", HOG], port=False,
                                             restart="never", resources={"memory": 64 << 20}, app=fresh_app)],
                      epoch=1)
    done = wait_for("the hog failed", lambda: (i := reconciler.instance("hog-1")) and i["state"] == "failed" and i)
    assert done["exit_code"] == -9
    assert done["message"] == "OOMKilled: went over its memory limit of 64Mi (killed by SIGKILL)"
    reports_keep_coming(reconciler)
    again = running(reconciler, "calm-web-1")
    assert again and again["pid"] == calm["pid"] and again["restarts"] == 0 and serves(again)


# What the app finds of the agent's folders and the key (argv: data dir, images dir, key file,
# another app's code layer, another instance's log folder), and whether it can write its own image.
HUNT = textwrap.dedent("""\
    import json, os, sys
    data, images, key, layer, logs = sys.argv[1:6]
    def attempt(what, fn):
        try:
            return [what, "found", repr(fn())[:80]]
        except OSError as e:
            return [what, type(e).__name__, e.strerror]
    def write_image():
        with open(os.path.join(os.getcwd(), "planted.py"), "w") as f:
            f.write("x")
    def write_home():
        with open(os.path.join(os.environ["HOME"], "mine"), "w") as f:
            f.write("home")
        return "written"
    found = [attempt("instances.json", lambda: open(os.path.join(data, "instances.json")).read()),
             attempt("agent-state.json", lambda: open(os.path.join(data, "agent-state.json")).read()),
             attempt("data listing", lambda: os.listdir(data)),
             attempt("images listing", lambda: os.listdir(images)),
             attempt("key", lambda: open(key, "rb").read()),
             attempt("other app's code", lambda: open(os.path.join(layer, "secret.py")).read()),
             attempt("other instance's log", lambda: open(os.path.join(logs, "output.log")).read()),
             attempt("own image", write_image),
             attempt("own home", write_home),
             attempt("tmp", lambda: os.listdir("/tmp"))]
    print("hunt", json.dumps(found), flush=True)
    import time; time.sleep(600)
""")


def test_an_app_finds_nothing_of_the_agents_folders_or_the_key_and_cannot_write_its_image(
        agent, reconciler, system_image_server, hunted_root, fresh_app, key_file):
    """Its mount namespace hides the data and images folders (file modes alone would still let it
    read another app's code: layers are readable by all) and the key; its own folders stay."""
    images = hunted_root / "images"
    other_layer = images / "code" / ("9" * 64)
    other_layer.mkdir(parents=True)
    (other_layer / "secret.py").write_text("API_KEY = 'of another app'\n")
    os.chmod(other_layer / "secret.py", 0o644)
    other_logs = hunted_root / "data" / "logs" / "other-web-1"
    other_logs.mkdir(parents=True)
    (other_logs / "output.log").write_text("another app's log\n")
    os.chmod(other_logs, 0o755)
    os.chmod(other_logs / "output.log", 0o644)
    handle = agent(root=hunted_root)
    reconciler.assign([assignment("hunt-web-1", system_image_server,
                                  ["python", "-c", HUNT, str(handle.data_dir), str(images), str(key_file),
                                   str(other_layer), str(other_logs)], port=False, app=fresh_app)], epoch=1)
    found = {what: (how, detail) for what, how, detail in
             json.loads(out_line(handle, "hunt-web-1", "hunt").split(" ", 1)[1])}
    for what in ("instances.json", "agent-state.json", "key", "other app's code", "other instance's log"):
        assert found[what][0] == "FileNotFoundError", f"{what}: {found[what]} (it must not be there at all)"
    for what in ("data listing", "images listing"):
        assert found[what][0] == "PermissionError", f"{what}: {found[what]}"
    assert found["own image"] == ("OSError", "Read-only file system"), found["own image"]
    assert found["own home"][0] == "found", found["own home"]
    assert (handle.data_dir / "home" / users.user_name(fresh_app) / "mine").read_text() == "home"
    way = [hunted_root.name] if str(hunted_root).startswith("/tmp/") else []   # the way to its own folders
    assert found["tmp"] == ("found", repr(way)), f"a fresh /tmp: {found['tmp']}"
    isolation = reconciler.latest()["node"]["isolation"]
    assert (isolation["status"], isolation["reason"]) == ("True", "AppUsersAndNamespaces"), isolation


# Whether the agent's instance table is there, and what HOME says.
PEEK = ("import os, sys\n"
        "try:\n"
        "    open(os.path.join(sys.argv[1], 'instances.json')).read()\n"
        "    seen = 'found'\n"
        "except OSError as e:\n"
        "    seen = type(e).__name__\n"
        "print('peek', seen, os.environ['HOME'], flush=True)\n"
        "import time; time.sleep(600)\n")


def test_a_spec_whose_env_names_the_data_dir_does_not_bring_it_back(
        agent, reconciler, system_image_server, open_root, fresh_app):
    """The folders bound back into the namespace are the agent's choice: a spec's HOME or PATH
    naming the data dir (or another app's layer) leaves it hidden."""
    data = open_root / "data"
    handle = agent(root=open_root)
    reconciler.assign([assignment("peek-web-1", system_image_server, ["python", "-c", PEEK, str(data)], port=False,
                                  app=fresh_app, env={"HOME": str(data), "PATH": f"{data}:/usr/bin:/bin"})],
                      epoch=1)
    assert handle.data_dir == data
    assert out_line(handle, "peek-web-1", "peek") == f"peek FileNotFoundError {data}"
