"""Isolation with a real agent as root: each app as its own system user, memory requests as
hard cgroup limits (an instance over its limit is OOM-killed and says so), and what the node
reports when it cannot enforce either. Root only (CI runs as root and says so in CORRAL_REQUIRE, which
makes every missing piece a failure); skipped otherwise."""
import corral.green

corral.green.patch()

import os  # noqa: E402
import pathlib  # noqa: E402
import pwd  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

from nodeagent import cgroups, users  # noqa: E402
from nodeagent.cgroupfs import MemoryCgroups  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    WAIT, agent, assignment, build_image_archive, image_server, key_file, pid_gone, reconciler, running,
    serve_archives, wait_for)
from tests.integration.test_agent_supervision import alive, from_new_agent  # noqa: E402
from tests.support import need, need_root  # noqa: E402


@pytest.fixture(autouse=True)
def as_root():
    """Every test here makes app users or cgroups: it needs root."""
    need_root("app users and cgroups need root (CI runs as root)")

SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)

# Prints who it runs as and which of the places it is given it can write, then serves HTTP.
WHOAMI = ("import getpass, os, sys\n"
          "def can_write(folder):\n"
          "    try:\n"
          "        open(os.path.join(folder, '.probe'), 'w').close()\n"
          "        return 'writable'\n"
          "    except OSError:\n"
          "        return 'read-only'\n"
          "print('user', getpass.getuser(), os.getuid(), flush=True)\n"
          "print('home', os.environ['HOME'], can_write(os.environ['HOME']), flush=True)\n"
          "print('code', can_write(os.getcwd()), flush=True)\n"
          "import http.server\n"
          "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()\n")

HOG = "x = bytearray(256 << 20)\nprint('not killed', flush=True)\n"


@pytest.fixture
def open_root():
    """A folder every user can pass (pytest's own tmp folder is root's, mode 0700): the agent's
    data and images go under it, so that app users can reach their logs and images."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="corral-isolation-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def system_image_server():
    """The test image with its venv's python linked to the system interpreter (this test's own may
    be under /root, which app users cannot pass)."""
    if SYSTEM_PYTHON is None:
        need("root", "the root-only isolation tests need a system python3 that other users can run")
    yield from serve_archives(build_image_archive(python=SYSTEM_PYTHON))


def kill_processes_of(uid):
    """SIGKILL every process that runs as ``uid`` (a user only this test's instances use)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if ids_of(int(entry))[0] == uid:
                    os.kill(int(entry), 9)
            except (OSError, KeyError, ValueError):
                pass


def app_with_a_fresh_user(prefix):
    """An app name (``prefix`` and this pid) whose user does not exist yet; the user (and anything a
    failed test left running as it) is deleted afterwards. A generator, for a fixture to yield from."""
    app = f"{prefix}{os.getpid() % 100000}"
    name = users.user_name(app)
    subprocess.run(["userdel", "--force", name], capture_output=True)
    yield app
    try:
        kill_processes_of(pwd.getpwnam(name).pw_uid)
    except KeyError:
        pass
    subprocess.run(["userdel", "--force", name], capture_output=True)


@pytest.fixture
def fresh_app():
    """An app whose user does not exist yet (:func:`app_with_a_fresh_user`)."""
    yield from app_with_a_fresh_user("iso")


def app_pid(leader):
    """The app's pid: the only child of the instance's capture process."""
    with open(f"/proc/{leader}/task/{leader}/children") as f:
        return int(f.read().split()[0])


def ids_of(pid):
    """Real (uid, gid) of ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def log_text(handle, iid):
    return (handle.data_dir / "logs" / iid / "output.log").read_text()


def test_as_root_each_app_runs_as_its_own_user_that_writes_its_home_but_not_its_image(
        agent, reconciler, system_image_server, open_root, fresh_app):
    handle = agent(root=open_root)
    reconciler.assign([assignment("iso-web-1", system_image_server, ["python", "-c", WHOAMI, "$PORT"],
                                  app=fresh_app)], epoch=1)
    inst = wait_for("running", lambda: running(reconciler, "iso-web-1"))
    entry = pwd.getpwnam(users.user_name(fresh_app))
    assert entry.pw_uid != 0 and entry.pw_shell == users.NOLOGIN
    expected = (entry.pw_uid, entry.pw_gid)
    assert ids_of(inst["pid"]) == expected, "the capture process dropped to the app's user too"
    assert ids_of(app_pid(inst["pid"])) == expected
    home = handle.data_dir / "home" / entry.pw_name
    text = wait_for("the app's lines", lambda: (t := log_text(handle, "iso-web-1")) and "code " in t and t)
    assert f"user {entry.pw_name} {entry.pw_uid}" in text
    assert f"home {home} writable" in text
    assert "code read-only" in text
    folder = handle.data_dir / "logs" / "iso-web-1"
    assert (folder.stat().st_uid, (folder / "output.log").stat().st_uid) == (entry.pw_uid, entry.pw_uid)
    assert "AppUsersNotEnforced" not in reconciler.latest()["node"]["conditions"]


def test_an_app_whose_user_was_deleted_is_adopted_and_restarted_under_a_new_one(
        agent, reconciler, system_image_server, open_root, fresh_app):
    first = agent(root=open_root)
    reconciler.assign([assignment("iso-web-1", system_image_server, ["python", "-c", WHOAMI, "$PORT"],
                                  app=fresh_app)], epoch=1)
    pid = wait_for("ready", lambda: (i := running(reconciler, "iso-web-1")) and i["ready"] and i)["pid"]
    uid = pwd.getpwnam(users.user_name(fresh_app)).pw_uid
    started_at = reconciler.latest()["started_at"]
    first.proc.kill()
    first.proc.wait(timeout=WAIT)
    # the instance now runs as a uid with no name: the classic NFS trap
    subprocess.run(["userdel", "--force", users.user_name(fresh_app)], check=True, capture_output=True)
    agent(root=open_root)
    adopted = wait_for("adopted and ready", lambda: (r := from_new_agent(reconciler, started_at))
                       and (i := r["instances"][0]) and i["ready"] and i)
    assert adopted["pid"] == pid and ids_of(pid)[0] == uid
    os.kill(app_pid(pid), 9)
    again = wait_for("restarted", lambda: (i := running(reconciler, "iso-web-1")) and i["pid"] not in (None, pid) and i)
    assert again["restarts"] == 1
    assert ids_of(again["pid"])[0] == pwd.getpwnam(users.user_name(fresh_app)).pw_uid, "the user is created again"


def test_no_app_users_runs_apps_as_the_agent_and_says_so(agent, reconciler, system_image_server, open_root):
    agent(root=open_root, run_args={"app_users": False})
    reconciler.assign([assignment("iso-web-1", system_image_server, ["python", "-c", WHOAMI, "$PORT"])], epoch=1)
    inst = wait_for("running", lambda: running(reconciler, "iso-web-1"))
    assert ids_of(app_pid(inst["pid"])) == (0, 0)
    assert "AppUsersNotEnforced" in reconciler.latest()["node"]["conditions"]


def test_folders_other_users_cannot_pass_turn_app_users_off_and_it_is_reported(agent, reconciler, image_server):
    agent()  # pytest's tmp folder is mode 0700: an app user could not reach its logs
    assert "AppUsersNotEnforced" in reconciler.latest()["node"]["conditions"]


def memory_layout():
    """Where the agent puts instance cgroups on this machine; without memory limits (a root
    agent's job), the test needs ``root`` (see tests.support.need) with the probe's reason."""
    found = MemoryCgroups.probe()
    if not found.enforced:
        need("root", f"no memory limits on this machine: {found.reason}")
    return found.layout


def test_an_instance_over_its_memory_request_is_oom_killed_and_says_so(agent, reconciler, image_server):
    layout = memory_layout()
    agent()
    reconciler.assign([assignment("hog-1", image_server, ["python", "-c", HOG], port=False, restart="never",
                                  resources={"memory": 64 << 20})], epoch=1)
    folder = cgroups.instance_dir(layout, "hog-1")
    done = wait_for("failed", lambda: (i := reconciler.instance("hog-1")) and i["state"] == "failed" and i)
    assert done["exit_code"] == -9
    assert done["message"] == "OOMKilled: went over its memory limit of 64Mi (killed by SIGKILL)"
    assert "MemoryLimitsNotEnforced" not in reconciler.latest()["node"]["conditions"]
    assert not os.path.exists(folder), "the instance's cgroup is removed once its processes are gone"


def test_an_instance_within_its_request_runs_inside_its_limited_cgroup(agent, reconciler, image_server):
    layout = memory_layout()
    handle = agent()
    reconciler.assign([assignment("lean-1", image_server, ["python", "-m", "http.server", "$PORT"],
                                  resources={"memory": 96 << 20})], epoch=1)
    inst = wait_for("running", lambda: running(reconciler, "lean-1"))
    folder = cgroups.instance_dir(layout, "lean-1")
    member = app_pid(inst["pid"])
    assert str(member) in open(os.path.join(folder, "cgroup.procs")).read().split()
    assert str(inst["pid"]) not in open(os.path.join(folder, "cgroup.procs")).read().split(), \
        "the capture process stays out of the limit"
    limit_file = "memory.max" if layout.kind == "v2" else "memory.limit_in_bytes"
    assert int(open(os.path.join(folder, limit_file)).read()) == 96 << 20
    reconciler.assign([], epoch=1)
    wait_for("stopped and forgotten", lambda: reconciler.latest()["instances"] == [])
    assert pid_gone(member) or not alive(member)
    assert not os.path.exists(folder)
    assert (handle.data_dir / "logs" / "lean-1").exists(), "the log folder stays for its retention period"


def test_forgotten_log_folders_go_after_the_retention_and_held_ones_stay(agent, reconciler, image_server):
    handle = agent(log_retention=1.0)
    reconciler.assign([assignment("keep-1", image_server, ["python", "-m", "http.server", "$PORT"]),
                       assignment("drop-1", image_server, ["python", "-m", "http.server", "$PORT"])], epoch=1)
    wait_for("both running", lambda: running(reconciler, "keep-1") and running(reconciler, "drop-1"))
    logs = handle.data_dir / "logs"
    old = os.stat(logs / "keep-1").st_mtime - 3600
    for path in [logs / "keep-1"] + list((logs / "keep-1").iterdir()):
        os.utime(path, (old, old))
    reconciler.assign([assignment("keep-1", image_server, ["python", "-m", "http.server", "$PORT"])], epoch=1)
    wait_for("drop-1's log folder deleted", lambda: not (logs / "drop-1").exists())
    assert (logs / "keep-1").exists(), "an instance the agent holds keeps its folder, however old"


@pytest.fixture
def hidden_python():
    """A copy of this test's interpreter in a folder only root can pass (mode 0700), wherever the
    interpreter itself lives (under root's home, or in /usr/bin where app users reach it)."""
    folder = tempfile.mkdtemp(prefix="corral-hidden-")
    os.chmod(folder, 0o700)
    python = os.path.join(folder, "python3")
    shutil.copy2(os.path.realpath(sys.executable), python)
    yield python
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hidden_image_server(hidden_python):
    """The test image with its venv's python linked to :func:`hidden_python`."""
    yield from serve_archives(build_image_archive(python=hidden_python))


def test_a_command_the_app_user_cannot_reach_fails_the_instance_naming_the_folder(
        agent, reconciler, hidden_python, hidden_image_server, open_root, fresh_app):
    blocked = users.denied(users.path_entries(hidden_python), 65534, 65534)
    assert blocked == os.path.dirname(hidden_python)
    agent(root=open_root)
    reconciler.assign([assignment("iso-web-1", hidden_image_server, ["python", "-c", WHOAMI, "$PORT"],
                                  app=fresh_app)],
                      epoch=1)
    failed = wait_for("failed", lambda: (i := reconciler.instance("iso-web-1")) and i["state"] == "failed" and i)
    assert failed["message"].startswith(f"user {users.user_name(fresh_app)} cannot reach {blocked}, on the way to")
    assert failed["pid"] is None


def test_an_image_interpreter_the_app_user_cannot_reach_fails_the_instance_whatever_the_command(
        agent, reconciler, hidden_python, hidden_image_server, open_root, fresh_app):
    """A venv script (waitress-serve, gunicorn) runs the image's python, not the command found on
    PATH: when that python is in a private folder the instance fails once, naming it, instead of
    crash-looping with exit 126."""
    agent(root=open_root)
    reconciler.assign([assignment("iso-web-2", hidden_image_server, ["sleep", "30"], app=fresh_app)], epoch=1)
    failed = wait_for("failed", lambda: (i := reconciler.instance("iso-web-2")) and i["state"] == "failed" and i)
    assert failed["message"] == (
        f"user {users.user_name(fresh_app)} cannot reach {os.path.dirname(hidden_python)}, on the way to the "
        f"image's interpreter {hidden_python}: build the image with a Python that other users can run "
        "(outside a private home), or run the agent with --no-app-users")
    assert failed["restarts"] == 0 and failed["pid"] is None
