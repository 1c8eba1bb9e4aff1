"""The capture process and the agent against the app they run, through the real agent as root.

- The app's env (``LD_PRELOAD`` of a library built here, ``PYTHONPATH``, ``PYTHONSTARTUP``,
  ``PATH``) reaches only the app's own process: the library's constructor, the sitecustomize and
  the commands planted on the PATH record who ran them, and none of them is root; the capture
  process's env is its fixed one and no env value is on any command line.
- Symlinks, FIFOs and names planted at every file the capture process or the agent opens in the
  app's log folder (``.runs``, ``.runs.tmp-<pid>``, ``capture.err``, ``output.log`` and its
  rotated names), then a crash, so that the instance is restarted and its log rotated: no file of
  root's outside is written or made, the agent keeps reporting, and the logs still work, read as
  ``corral logs`` reads them (as root) without a byte of what the links point at.

Root only (CI runs as root)."""
import corral.green

corral.green.patch()

import os  # noqa: E402
import pathlib  # noqa: E402
import pwd  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

import pytest  # noqa: E402

from nodeagent import logs, users  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    WAIT, agent, assignment, key_file, reconciler, running, wait_for)
from tests.integration.test_agent_isolation import (  # noqa: E402,F401  (fixtures)
    app_pid, fresh_app, system_image_server)
from tests.support import need, need_root  # noqa: E402


@pytest.fixture(autouse=True)
def as_root():
    """Every test here runs apps as their own users: it needs root."""
    need_root("app users need root (CI runs as root)")


@pytest.fixture
def open_root():
    """A folder every user can pass (pytest's is root's alone), outside /tmp."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="corral-adversarial-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


EVIL_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ld-%d", MARKERS, (int)getpid());
    FILE *f = fopen(path, "w");
    if (f) { fprintf(f, "%d\n", (int)getuid()); fclose(f); }
}
"""

MARK_PY = ("import os\n"
           "with open(os.path.join({markers!r}, '{kind}-%d' % os.getpid()), 'w') as f:\n"
           "    f.write('%d\\n' % os.getuid())\n")

# On the PATH the app's env sets: each records its uid, then does what the real one does.
MARK_SH = "#!/bin/sh\n/usr/bin/id -u > {markers}/path-{name}-$$\nexec /usr/bin/{name} \"$@\"\n"

# Runs a command found on its PATH (the planted `sleep`), then stays up.
ENV_APP = ("import subprocess, time\n"
           "subprocess.run(['sleep', '0'])\n"
           "print('ran sleep', flush=True)\n"
           "time.sleep(600)\n")


@pytest.fixture
def env_tricks(open_root):
    """``(env, markers)``: an app env that would run code of the app's at every start of a process
    that honours it, each piece writing ``<markers>/<kind>-<pid>`` with the uid it ran as."""
    if shutil.which("gcc") is None:
        need("root", "gcc is needed to build the LD_PRELOAD library of the test")
    markers = open_root / "markers"
    markers.mkdir()
    os.chmod(markers, 0o1777)
    lib = open_root / "evil"
    lib.mkdir()
    source = lib / "evil.c"
    source.write_text(EVIL_C)
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKERS="{markers}"', "-o", str(lib / "evil.so"), str(source)],
                   check=True, capture_output=True)
    (lib / "sitecustomize.py").write_text(MARK_PY.format(markers=str(markers), kind="sitecustomize"))
    (lib / "startup.py").write_text(MARK_PY.format(markers=str(markers), kind="startup"))
    for name in ("sleep", "python3", "sh", "tar", "useradd", "id", "true"):
        script = lib / name
        script.write_text(MARK_SH.format(markers=markers, name=name))
        script.chmod(0o755)
    for path in [lib] + list(lib.iterdir()):
        os.chmod(path, 0o755)
    env = {"LD_PRELOAD": str(lib / "evil.so"), "PYTHONPATH": str(lib), "PYTHONSTARTUP": str(lib / "startup.py"),
           "PYTHONINSPECT": "1", "PATH": f"{lib}:/usr/bin:/bin", "SECRET_TOKEN": "s3cr3t-env-value-42"}
    return env, markers


def marks(markers):
    """``{file name: uid}`` of every marker written so far."""
    return {p.name: int(p.read_text().strip() or -1) for p in markers.iterdir()}


def test_the_apps_env_runs_nothing_as_root_and_reaches_only_the_app(
        agent, reconciler, system_image_server, open_root, fresh_app, env_tricks):
    env, markers = env_tricks
    handle = agent(root=open_root)
    reconciler.assign([assignment("env-web-1", system_image_server, ["python", "-c", ENV_APP], port=False,
                                  env=env, app=fresh_app)], epoch=1)
    inst = wait_for("running", lambda: running(reconciler, "env-web-1"))
    uid = pwd.getpwnam(users.user_name(fresh_app)).pw_uid
    log = handle.data_dir / "logs" / "env-web-1" / "output.log"
    wait_for("the app ran the sleep on its PATH", lambda: log.exists() and "ran sleep" in log.read_text())
    seen = marks(markers)
    assert any(n.startswith("ld-") for n in seen), f"the library is loaded by the app's processes: {seen}"
    assert any(n.startswith("sitecustomize-") for n in seen), f"PYTHONPATH reaches the app's python: {seen}"
    assert any(n.startswith("path-sleep-") for n in seen), f"the app's PATH is the app's: {seen}"
    assert set(seen.values()) == {uid}, f"every piece of the app's env ran as the app's uid {uid}, never root: {seen}"
    shim = inst["pid"]
    with open(f"/proc/{shim}/environ", "rb") as f:
        shim_env = dict(item.decode().split("=", 1) for item in f.read().split(b"\0") if item)
    assert shim_env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, \
        "the capture process runs with its fixed env, none of the app's"
    for pid in (shim, app_pid(shim)):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"s3cr3t-env-value-42" not in f.read(), "no env value on a command line every user reads"


# Its first three runs plant, at every name the capture process or the agent opens in its log
# folder, what PLANT says (a symlink to the canary, a symlink to a name in root's folder that does
# not exist yet, a FIFO), write enough to rotate the log, and exit 3 so that it is restarted; the
# fourth run says "calm" and stays up.
PLANTER = ("import os, sys, time\n"
           "folder, canary, nowhere, kind = (os.environ[k] for k in ('LOGDIR', 'CANARY', 'NOWHERE', 'PLANT'))\n"
           "home = os.environ['HOME']\n"
           "if len([n for n in os.listdir(home) if n.startswith('planted-')]) >= 3:\n"
           "    print('calm', flush=True)\n"
           "    time.sleep(600)\n"
           "open(os.path.join(home, 'planted-%d' % os.getpid()), 'w').close()\n"
           "def plant(name, what):\n"
           "    path = os.path.join(folder, name)\n"
           "    try:\n"
           "        os.unlink(path)\n"
           "    except FileNotFoundError:\n"
           "        pass\n"
           "    if what == 'fifo':\n"
           "        os.mkfifo(path)\n"
           "    elif what == 'new':\n"
           "        os.symlink(os.path.join(nowhere, 'new-' + name), path)\n"
           "    else:\n"
           "        os.symlink(canary, path)\n"
           "last = int(open('/proc/sys/kernel/ns_last_pid').read())\n"
           "names = ['.runs', 'capture.err', 'output.log.1', 'output.log.2', 'output.log.3']\n"
           "names += ['.runs.tmp-%d' % pid for pid in range(last, last + 400)]\n"
           "for n, name in enumerate(names):\n"
           "    plant(name, kind if kind == 'fifo' else ('new' if n % 2 else 'link'))\n"
           "for n in range(40):\n"
           "    print('filler', n, 'x' * 60, flush=True)\n"
           "print('planted', os.getpid(), flush=True)\n"
           "plant('output.log', kind if kind == 'fifo' else 'link')\n"
           "sys.exit(3)\n")

CANARY = "canary: root's own 0600 file\n"


@pytest.fixture
def canary(open_root):
    """``(canary file, root-only folder)``: a root-owned 0600 file in a 0700 folder of root's, and its
    ``(content, mtime_ns)`` now."""
    nowhere = open_root / "root-only"
    nowhere.mkdir()
    os.chmod(nowhere, 0o700)
    path = nowhere / "canary"
    path.write_text(CANARY)
    os.chmod(path, 0o600)
    return path, nowhere


def read_like_corral_logs(data_dir, iid, timeout=10.0):
    """Every line of the instance's log as the agent reads it for ``corral logs`` (as root), in a
    thread that must end within ``timeout`` (a reader blocked on a FIFO fails the test)."""
    out = {}

    def read():
        snap = logs.Snapshot(str(data_dir), iid)
        try:
            out["lines"] = list(snap.lines())
        finally:
            snap.close()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), "reading the log blocked (a FIFO planted in the folder was opened)"
    return out["lines"]


def planted_runs(reconciler, handle, fresh_app, system_image_server, canary, kind):
    """Start the planting app with ``kind`` ("link" or "fifo"), wait until it was restarted twice
    (each run plants again before it crashes), and return its log folder."""
    path, nowhere = canary
    folder = handle.data_dir / "logs" / "plant-1"
    env = {"LOGDIR": str(folder), "CANARY": str(path), "NOWHERE": str(nowhere), "PLANT": kind}
    reconciler.assign([assignment("plant-1", system_image_server, ["python", "-c", PLANTER], port=False, env=env,
                                  app=fresh_app)], epoch=1)
    wait_for("restarted three times and running", lambda: (i := running(reconciler, "plant-1")) and i["restarts"] >= 3,
             timeout=40)
    return folder


def calm_line(folder):
    """Wait until the last run's "calm" line is in a regular ``output.log``: the log works again."""
    log = folder / "output.log"
    wait_for("the calm run's line", lambda: log.is_file() and not log.is_symlink() and " out calm" in log.read_text())


def agent_with_small_logs(agent, open_root):
    return agent(root=open_root, log_max_bytes=1500, log_keep=3, restart_backoff_first=0.2, restart_backoff_max=0.5)


def test_symlinks_planted_at_every_log_name_make_root_write_nothing_outside(
        agent, reconciler, system_image_server, open_root, fresh_app, canary):
    path, nowhere = canary
    before = (path.read_text(), path.stat().st_mtime_ns)
    handle = agent_with_small_logs(agent, open_root)
    folder = planted_runs(reconciler, handle, fresh_app, system_image_server, canary, "link")
    assert (path.read_text(), path.stat().st_mtime_ns) == before, "root wrote through a planted symlink"
    assert sorted(os.listdir(nowhere)) == ["canary"], "root made a file where a planted symlink pointed"
    calm_line(folder)
    uid = pwd.getpwnam(users.user_name(fresh_app)).pw_uid
    owners = {name: os.lstat(folder / name).st_uid for name in os.listdir(folder)}
    assert set(owners.values()) == {uid}, f"nothing in the app's folder is made by root: {owners}"
    lines = read_like_corral_logs(handle.data_dir, "plant-1")
    assert not any("canary" in line for line in lines), "the log reader followed a planted symlink"
    assert any(" sys run " in line and " started pid " in line for line in lines), "the log has its run markers"
    assert lines[-1].endswith(" out calm"), "the log still works: the last run's line is there"


def test_fifos_planted_at_every_log_name_block_neither_the_agent_nor_the_logs(
        agent, reconciler, system_image_server, open_root, fresh_app, canary):
    handle = agent_with_small_logs(agent, open_root)
    folder = planted_runs(reconciler, handle, fresh_app, system_image_server, canary, "fifo")
    seen = len(reconciler.reports)
    wait_for("the agent still reporting", lambda: len(reconciler.reports) >= seen + 5)
    runs = {i["restarts"] for r in reconciler.reports[seen:] for i in r["instances"] if i["id"] == "plant-1"}
    assert runs, "the instance is still reported"
    calm_line(folder)
    lines = read_like_corral_logs(handle.data_dir, "plant-1")
    assert lines and lines[-1].endswith(" out calm"), "the log still works"
