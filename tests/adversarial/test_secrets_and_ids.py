"""Secrets and ids against the real agent: an app that hunts for the cluster key and for another
app's env finds nothing while apps run as their own users; hostile ids on the bus (``../``, an
absolute path, NUL, overlong, upper case, a trailing newline) are refused and counted, and
nothing is created outside the agent's folders; hashed app user names never collide with
verbatim ones; the node says which isolation it provides (``Isolation``).

The agent of the hunt is started exactly as ``corral up`` starts one (its argv and environment
from :func:`corral.cli.up.daemon_commands`), with the key where ``corral up`` keeps it, beside the
node's data dir, so the hunt sees what an app of a real cluster would."""
import corral.green

corral.green.patch()

import json  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sysconfig  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402

from corral import names  # noqa: E402
from corral.cli import up  # noqa: E402
from corral.cli.client import config_path  # noqa: E402
from corral.wire.curve import server_secret  # noqa: E402
from corral.wire.keys import read_key  # noqa: E402
from nodeagent import users  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    NODE, WAIT, Reconciler, agent, assignment, image_server, key_file, reconciler, running, wait_for)
from tests.integration.test_agent_isolation import (  # noqa: E402,F401  (fixtures)
    kill_processes_of, open_root, system_image_server)
from tests.support import need, need_root  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON3 = "/usr/bin/python3"

# Hunts, as an app would, for the cluster key (its parents' argv and environ, every process's
# argv, the data dir, where corral up keeps the key and the store, the client config) and for
# another app's secret env value (the instance table, every process's environ, the log folders
# named in any process's argv or found by listing). Prints FOUND for each success, then a
# self-check (it can read its own environ: the hunt works) and HUNT DONE.
HUNTER = r'''
import os, re
MARK = b"cana" + b"ry-"          # the victim's value starts so; never contiguous in this source
home = os.environ["HOME"]        # <data_dir>/home/<user>
data_dir = os.path.dirname(os.path.dirname(home))
cluster_dir = os.path.dirname(os.path.dirname(data_dir))   # corral up: <dir>/nodes/<node>

def found(what, where):
    print("FOUND", what, "at", where, flush=True)

def read(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None

def key_paths(blob):
    out = []
    words = blob.split(b"\0")
    for i, w in enumerate(words):
        if w == b"--secret-file" and i + 1 < len(words):
            out.append(words[i + 1])
        for name in (b"CORRAL_SECRET_FILE=", b"CORRAL_STORE="):
            if w.startswith(name):
                out.append(w[len(name):])
    return [p.decode(errors="replace") for p in out]

# 1. the parents: argv and environ
pid = os.getppid()
while pid > 1:
    for part in ("cmdline", "environ"):
        blob = read(f"/proc/{pid}/{part}") or b""
        for path in key_paths(blob):
            found(f"the key's or store's name {path!r}", f"/proc/{pid}/{part}")
            if read(path) is not None:
                found("the key itself", path)
    stat = read(f"/proc/{pid}/stat") or b"0 (x) S 0"
    pid = int(stat[stat.rindex(b")") + 2:].split()[1])

# 2. every process: argv (a key's path), environ (the victim's value)
log_dirs = set()
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == os.getpid():
        continue
    cmd = read(f"/proc/{entry}/cmdline") or b""
    if b"--secret-file" in cmd.split(b"\0") and cluster_dir.encode() in cmd:  # this cluster's (tests share the machine)
        found("a key path on a command line", f"/proc/{entry}/cmdline")
    for m in re.finditer(rb"(/[^\0]*?/logs/[a-z0-9-]+)", cmd):
        log_dirs.add(m.group(1).decode(errors="replace"))
    env = read(f"/proc/{entry}/environ") or b""
    if MARK in env:
        found("another app's env value", f"/proc/{entry}/environ")

# 3. the data dir and what corral up keeps beside it
for folder in (data_dir, os.path.join(data_dir, "logs"), os.path.join(data_dir, "home")):
    try:
        names = os.listdir(folder)
        found(f"a listing of {len(names)} names", folder)
        if folder.endswith("logs"):
            log_dirs.update(os.path.join(folder, n) for n in names)
    except OSError:
        pass
for path in (os.path.join(data_dir, "instances.json"), os.path.join(data_dir, "agent-state.json"),
             os.path.join(cluster_dir, "secret"), os.path.join(cluster_dir, "corral.db"),
             os.environ.get("CLIENT_CONFIG", "/root/.config/corral/config.yaml")):
    blob = read(path)
    if blob is not None:
        found("a readable file" + (" holding another app's env value" if MARK in blob else ""), path)

# 4. other instances' log folders
for folder in sorted(log_dirs):
    if folder.rstrip("/").endswith(os.environ["CORRAL_INSTANCE"]):
        continue
    for name in ("output.log", "output.log.1", "capture.err", ".runs"):
        blob = read(os.path.join(folder, name))
        if blob is not None and MARK in blob:
            found("another app's env value in its log", os.path.join(folder, name))

print("SELF-CHECK", "ok" if b"HUNT_SELF=1" in (read("/proc/self/environ") or b"") else "failed", flush=True)
print("HUNT DONE", flush=True)
import time
time.sleep(600)
'''

# The victim keeps a secret in its env and writes it to its own log.
VICTIM = "import os, time\nprint(os.environ['API_TOKEN'], flush=True)\ntime.sleep(600)\n"


@pytest.fixture
def two_apps():
    """Two app names whose users do not exist yet (deleted, with their processes, afterwards)."""
    apps = [f"hunter{os.getpid() % 100000}", f"victim{os.getpid() % 100000}"]
    for app in apps:
        subprocess.run(["userdel", "--force", users.user_name(app)], capture_output=True)
    yield apps
    for app in apps:
        try:
            kill_processes_of(pwd.getpwnam(users.user_name(app)).pw_uid)
        except KeyError:
            pass
        subprocess.run(["userdel", "--force", users.user_name(app)], capture_output=True)


@pytest.fixture
def up_reconciler(key_file):
    """A test reconciler whose bus is encrypted as ``corral up``'s are (``--bus-encryption required``)."""
    rec = Reconciler(read_key(key_file), curve_secret=server_secret(read_key(key_file), "required"))
    yield rec
    rec.close()


@pytest.fixture
def up_agent(tmp_path, up_reconciler, key_file):
    """Start node-1's agent as ``corral up`` starts it, in the cluster folder ``root``: the key at
    ``root/secret`` (0600, the reconciler's key), data in ``root/nodes/node-1``, images in
    ``root/images``; its argv and environment from :func:`corral.cli.up.daemon_commands`, its
    reconciler ``up_reconciler``."""
    reconciler = up_reconciler
    started = []

    def start(root, extra=()):
        secret = root / "secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (read_key(key_file).hex() + "\n").encode())
        os.close(fd)
        settings = tmp_path / "settings.yaml"
        settings.write_text(json.dumps({"heartbeat": 0.2}))
        args = types.SimpleNamespace(reconcilers=1, nodes=1, base_port=7070, settings=str(settings))
        name, argv, *env = next(c for c in up.daemon_commands(args, str(root), str(secret), "sqlite:///unused.db")
                                if c[0] == NODE)
        argv = list(argv)
        argv[argv.index("--reconciler") + 1] = reconciler.endpoint
        log = open(tmp_path / "agent.log", "ab")
        proc = subprocess.Popen(argv + list(extra), env={**os.environ, **(env[0] if env else {})},
                                stdout=log, stderr=log)
        log.close()
        started.append(proc)
        wait_for("the agent's first report", reconciler.latest)
        return types.SimpleNamespace(proc=proc, data_dir=root / "nodes" / NODE, log=tmp_path / "agent.log")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def log_of(data_dir, iid):
    try:
        return (data_dir / "logs" / iid / "output.log").read_text()
    except OSError:
        return ""


def test_an_app_hunting_for_the_key_and_another_apps_env_finds_nothing(
        up_agent, up_reconciler, system_image_server, open_root, two_apps):
    reconciler = up_reconciler
    need_root("apps run as their own users only under a root agent (CI runs as root)")
    hunter, victim = two_apps
    handle = up_agent(open_root)
    canary = "canary-" + secrets.token_hex(8)
    victim_entry = assignment("victim-web-1", system_image_server, ["python", "-c", VICTIM], port=False,
                              app=victim, env={"API_TOKEN": canary})
    reconciler.assign([victim_entry], epoch=1)
    wait_for("the victim's secret in its own log", lambda: canary in log_of(handle.data_dir, "victim-web-1"))
    hunter_entry = assignment("hunter-web-1", system_image_server, ["python", "-c", HUNTER], port=False,
                              app=hunter, env={"HUNT_SELF": "1", "CLIENT_CONFIG": config_path()})
    reconciler.assign([victim_entry, hunter_entry], epoch=1)
    text = wait_for("the hunt to end", lambda: (t := log_of(handle.data_dir, "hunter-web-1")) and "HUNT DONE" in t
                    and t, timeout=60)
    assert "SELF-CHECK ok" in text, f"the hunt could not even read its own environ:\n{text}"
    assert "FOUND" not in text, f"the hunting app found something:\n{text}"
    # and what the hunt looked for is there to be found, for root
    assert canary in (handle.data_dir / "instances.json").read_text()
    for path in (handle.data_dir / "instances.json", handle.data_dir / "agent-state.json", open_root / "secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (handle.data_dir, handle.data_dir / "logs", handle.data_dir / "home"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o066 == 0, f"{folder} may be listed or written by others"
    assert reconciler.latest()["node"]["isolation"]["status"] == "True"


def test_without_app_users_the_node_says_apps_are_not_isolated_and_why(up_agent, up_reconciler, open_root):
    reconciler = up_reconciler
    need_root("the isolation a root agent provides, turned off (CI runs as root)")
    up_agent(open_root, extra=["--no-app-users"])
    isolation = reconciler.latest()["node"]["isolation"]
    assert (isolation["type"], isolation["status"], isolation["reason"]) == ("Isolation", "False", "AppUsersOff")
    assert "--no-app-users" in isolation["message"]
    assert "AppUsersNotEnforced" in reconciler.latest()["node"]["conditions"], "the old name stays for its readers"


def test_the_agent_cannot_be_read_by_a_process_of_its_own_user(up_reconciler, key_file, open_root, tmp_path):
    """Where apps share the agent's uid (a non-root agent, as on a laptop), its memory and environ
    are still closed to them: it is non-dumpable. The agent runs here as ``nobody`` (the system
    python, this checkout on its path), and a capability-less process of that uid reads its
    ``/proc/PID/environ``: refused. (Against a root agent the kernel refuses a capability-less
    reader anyway, for lack of the agent's capabilities: that would prove nothing.)"""
    need_root("running an agent and a reader as another uid (CI runs as root)")
    if not os.path.exists(SYSTEM_PYTHON3):
        need("root", f"an agent of another uid needs {SYSTEM_PYTHON3} (this test's own python is under /root)")
    nobody = pwd.getpwnam("nobody")
    as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
    data, images, secret = open_root / "data", open_root / "images", open_root / "nobody.key"
    for folder in (data, images):
        folder.mkdir()
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    secret.write_bytes(key_file.read_bytes())
    os.chown(secret, nobody.pw_uid, nobody.pw_gid)
    os.chmod(secret, 0o600)
    site = sysconfig.get_paths()["purelib"]   # this test's packages (eventlet, zmq, ...), for the same 3.x
    boot = (f"import sys; sys.path[:0] = [{ROOT!r}, {site!r}]\n"
            "from corral.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    log = open(tmp_path / "nobody-agent.log", "ab")
    # --secret-file (kept for compatibility) rather than the environment: this is about the agent's
    # memory and environ, and an older agent must be able to start here too
    proc = subprocess.Popen(as_nobody + [SYSTEM_PYTHON3, "-c", boot, "agent", "--name", NODE,
                                         "--reconciler", up_reconciler.endpoint, "--data-dir", str(data),
                                         "--images-dir", str(images), "--secret-file", str(secret)],
                            env={**os.environ, "CORRAL_PROBE_ENV": "agent-environ-marker"}, stdout=log, stderr=log)
    log.close()
    try:
        wait_for("the nobody agent's first report", up_reconciler.latest, timeout=30)
        reader = subprocess.run(as_nobody + ["cat", f"/proc/{proc.pid}/environ"], capture_output=True)
        assert b"agent-environ-marker" not in reader.stdout, "a process of the agent's own uid read its environ"
        assert reader.returncode != 0 and b"Permission denied" in reader.stderr, reader.stderr
        isolation = up_reconciler.latest()["node"]["isolation"]
        assert (isolation["status"], isolation["reason"]) == ("False", "AgentNotRoot")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("bad", [
    "../escaped", "../../escaped-twice", "/tmp/corral-abs-escape", "nul\x00byte", "x" * 300, "Upper-web-1",
    "trailing-newline\n",
], ids=["dotdot", "dotdot-twice", "absolute", "nul", "overlong", "uppercase", "trailing-newline"])
def test_a_hostile_id_on_the_wire_is_refused_and_counted_and_creates_nothing(agent, reconciler, image_server, bad):
    for stale in ("/tmp/corral-abs-escape", "/tmp/corral-exec-ran"):  # left by a run against an older agent
        subprocess.run(["rm", "-rf", stale], check=True)
    handle = agent()
    data = handle.data_dir
    outside = [data / "escaped", data.parent / "escaped-twice", "/tmp/corral-abs-escape"]

    def refused():
        got = reconciler.latest()["node"]["rejected_messages"]
        return got.get("schema", 0) + got.get("bad_id", 0)

    sent = 0
    for field in ("id", "app", "process"):
        entry = assignment("fine-web-1", image_server, ["python", "-m", "http.server", "$PORT"])
        entry[field] = bad
        reconciler.assign([entry], epoch=1)
        sent += 1
    for kind in ("logs_open", "exec_open"):
        body = {"stream": f"s-{kind}", "instance": bad, "window": 8}
        if kind == "exec_open":
            body.update(argv=["sh", "-c", "touch /tmp/corral-exec-ran"], tty=False)
        assert reconciler.server.send(NODE.encode(), kind, body, 1)
        sent += 1
    wait_for(f"{sent} refusals counted", lambda: refused() >= sent)
    assert refused() == sent
    assert reconciler.latest()["instances"] == [], "no hostile assign was acted on"
    assert [p for p in map(str, outside) if os.path.exists(p)] == [], "a hostile id named a folder outside"
    assert not os.path.exists("/tmp/corral-exec-ran")
    assert not (data / "logs").exists() or os.listdir(data / "logs") == [], "a log folder was made"
    # and the agent still obeys a good assign
    reconciler.assign([assignment("fine-web-1", image_server, ["python", "-m", "http.server", "$PORT"])], epoch=1)
    wait_for("the good instance running", lambda: running(reconciler, "fine-web-1"))


def test_hashed_user_names_never_collide_with_verbatim_ones():
    # The old scheme: a 25-character app used verbatim, and a long app hashed to
    # corral-<16 chars>-<8 hex>, could name the same user.
    long = "abcdefghijklmnop-and-then-a-great-deal-more-of-an-app-name"
    short = "abcdefghijklmnop-" + __import__("hashlib").sha256(long.encode()).hexdigest()[:8]
    assert len(short) == 25 and names.bad_assignment({"id": "a", "app": short}) is None
    assert users.user_name(short) == "corral-" + short
    assert users.user_name(long) != users.user_name(short)
    # verbatim names never hold the hashed mark, hashed ones always do, and every name is valid
    verbatim = ["a", "hello", "a" * 25, "1st-app", short]
    hashed = [long, "a" * 26, "x" * 63, "Hello_World", "ünïcode", "---", ""]
    for app in verbatim:
        assert users.HASHED_MARK not in users.user_name(app)
    for app in hashed:
        name = users.user_name(app)
        assert users.HASHED_MARK in name and len(name) <= users.MAX_NAME and users._VALID.match(name), name
    made = [users.user_name(f"{'q' * 20}-{i}-{'z' * 20}") for i in range(20000)]
    assert len(set(made)) == len(made)


@pytest.mark.parametrize("schema, path", [
    ("wire/assign", ["properties", "instances", "items", "properties", "id", "pattern"]),
    ("wire/assign", ["properties", "instances", "items", "properties", "app", "pattern"]),
    ("wire/assign", ["properties", "instances", "items", "properties", "process", "pattern"]),
    ("wire/exec_open", ["properties", "instance", "pattern"]),
    ("wire/logs_open", ["properties", "instance", "pattern"]),
], ids=["assign-id", "assign-app", "assign-process", "exec-instance", "logs-instance"])
def test_the_wire_schemas_hold_the_agents_patterns(schema, path):
    import schemas
    node = schemas.load(schema)
    for key in path:
        node = node[key]
    assert node in (names.INSTANCE_ID, names.DNS_LABEL)
    assert node == (names.INSTANCE_ID if path[-2] in ("id", "instance") else names.DNS_LABEL)
