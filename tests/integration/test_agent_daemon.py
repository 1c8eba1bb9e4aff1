"""The agent daemon end to end: a real agent process, a fake reconciler on a real bus,
an image served over real HTTP, and real instance processes."""
import corral.green

corral.green.patch()

import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from corral.wire.bus import BusServer  # noqa: E402
from corral.wire.keys import new_key_file  # noqa: E402
from tests.support import serve_bytes  # noqa: E402

NODE = "node-1"
IMAGE = "sha256:" + "1" * 64
WAIT = 20.0   # seconds any one condition may take before the test fails

ENV_SERVER = textwrap.dedent("""\
    import http.server, json, os, sys

    class Env(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Env).serve_forever()
""")

# Ignores SIGTERM, and so does the child it starts; both write their pids.
STUBBORN = textwrap.dedent("""\
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(os.environ["PIDFILE"] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(os.environ["PIDFILE"] + ".tmp", os.environ["PIDFILE"])
    time.sleep(600)
""")


# Serves 200 on every path until the file $SICKFILE exists, then 500.
SICK = textwrap.dedent("""\
    import http.server, os, sys

    class Sick(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(500 if os.path.exists(os.environ["SICKFILE"]) else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Sick).serve_forever()
""")


def wait_for(what, predicate, timeout=WAIT):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def build_image_archive(python=sys.executable):
    """The two layer archives of an image: ``{"env": tar of bin/python linking to ``python`` (this
    interpreter by default), "code": tar of the app's scripts}``."""
    bufs = {"env": io.BytesIO(), "code": io.BytesIO()}
    with tarfile.open(fileobj=bufs["env"], mode="w") as env_tar, tarfile.open(fileobj=bufs["code"], mode="w") as code_tar:
        class tar:  # noqa: N801 - routes app/... to the code layer and venv/... to the env layer
            @staticmethod
            def addfile(info, data=None):
                target, _, rest = info.name.partition("/")
                if not rest:
                    return
                info.name = rest
                (code_tar if target == "app" else env_tar).addfile(info, data)

        def add_file(name, text):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        for folder in ("app", "venv", "venv/bin"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        link = tarfile.TarInfo("venv/bin/python")
        link.type, link.linkname = tarfile.SYMTYPE, python
        tar.addfile(link)
        add_file("app/hello.txt", "hello from the image\n")
        add_file("app/envserver.py", ENV_SERVER)
        add_file("app/stubborn.py", STUBBORN)
        add_file("app/sick.py", SICK)
    return {kind: buf.getvalue() for kind, buf in bufs.items()}


class Reconciler:
    """A fake reconciler: a real BusServer that keeps every report and sends assigns."""

    def __init__(self, key, curve_secret=None):
        self.reports = []
        self.server = BusServer("tcp://127.0.0.1:*", key, "reconciler-1", self._on_message,
                                curve_secret=curve_secret).start()
        self.endpoint = self.server.endpoint

    def _on_message(self, peer, msg):
        if msg.type == "report":
            self.reports.append(msg.body)

    def latest(self):
        return self.reports[-1] if self.reports else None

    def instance(self, iid):
        """The instance ``iid`` in the latest report, or None."""
        report = self.latest()
        for inst in report["instances"] if report else []:
            if inst["id"] == iid:
                return inst
        return None

    def assign(self, instances, epoch, node=NODE, **extra):
        assert self.server.send(node.encode(), "assign", {"node": node, "instances": instances, **extra}, epoch)

    def close(self):
        self.server.close()


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "cluster.key"
    new_key_file(path)
    return path


@pytest.fixture
def reconciler(key_file):
    from corral.wire.keys import read_key
    rec = Reconciler(read_key(key_file))
    yield rec
    rec.close()


@pytest.fixture
def image_server():
    """Serves the layer archives at /env.tar and /code.tar; yields (base url, {kind: sha256}, downloads)."""
    yield from serve_archives(build_image_archive())


def serve_archives(archives):
    """Serve ``archives`` ({kind: bytes}) at /<kind>.tar until closed; yields (base url, {kind: sha256}, downloads)."""
    hits = []
    server = serve_bytes({f"{kind}.tar": data for kind, data in archives.items()}, hits)
    yield (server.url, {kind: hashlib.sha256(data).hexdigest() for kind, data in archives.items()}, hits)
    server.shutdown()
    server.server_close()


@pytest.fixture
def agent(tmp_path, reconciler, key_file):
    """Starts the agent daemon in its own process; yields a handle with the process and its folders."""
    started = []

    def start(root=None, run_args=None, **timings):
        """Start an agent with its folders under ``root`` (tmp_path by default), extra keyword
        arguments ``run_args`` of nodeagent.daemon.run and ``timings``."""
        base = tmp_path if root is None else root
        data_dir, images_dir = base / "data", base / "images"
        args = {**dict(name=NODE, reconcilers=[reconciler.endpoint], data_dir=str(data_dir),
                       secret_file=str(key_file), images_dir=str(images_dir), labels={"zone": "a"}), **(run_args or {})}
        code = ("import corral.green; corral.green.patch()\n"
                "import json, sys, logging\n"
                "logging.basicConfig(level=logging.INFO)\n"
                "from corral.settings import Timings\n"
                "from nodeagent.daemon import run\n"
                "run(**json.loads(sys.argv[1]), timings=Timings(**json.loads(sys.argv[2])))\n")
        log = open(tmp_path / "agent.log", "ab")
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args), json.dumps({"heartbeat": 0.2, **timings})],
                                stdout=log, stderr=log)
        log.close()
        handle = type("AgentProcess", (), {"proc": proc, "data_dir": data_dir, "images_dir": images_dir,
                                            "log": tmp_path / "agent.log"})
        started.append(handle)
        wait_for("the agent's first report", reconciler.latest)
        return handle

    yield start
    for handle in started:
        if handle.proc.poll() is None:
            handle.proc.send_signal(signal.SIGINT)
            try:
                handle.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                handle.proc.kill()
                handle.proc.wait()


def assignment(iid, image_server, command, *, port=True, env=None, restart="always", grace=5.0, sha256=None,
               health=None, app="hello", resources=None):
    url, digests, _ = image_server
    layers = [{"kind": kind, "id": "sha256:" + ("2" if kind == "env" else "3") * 64, "url": f"{url}/{kind}.tar",
               "sha256": (sha256 if kind == "code" else None) or digests[kind]} for kind in ("env", "code")]
    spec = {"command": command, "env": env or {}, "port": port, "restart": restart,
            "drainPeriod": 0, "stopGracePeriod": grace, "health": health}
    if resources is not None:
        spec["resources"] = resources
    return {"id": iid, "app": app, "process": "web", "revision": "1", "image": IMAGE,
            "artifact": {"layers": layers}, "spec": spec}


HTTP_SERVER = ["python", "-m", "http.server", "$PORT", "--bind", "127.0.0.1"]


def pid_gone(pid):
    """True when no process (zombie or not) has ``pid``."""
    return not os.path.exists(f"/proc/{pid}")


def running(reconciler, iid):
    inst = reconciler.instance(iid)
    return inst if inst and inst["state"] == "running" else None


def test_agent_registers_with_node_facts(agent, reconciler):
    agent()
    report = reconciler.latest()
    node = report["node"]
    assert node["name"] == NODE and node["labels"] == {"zone": "a"} and node["address"] == "127.0.0.1"
    assert node["capacity"]["cpu"] >= 1 and node["capacity"]["memory"] > 0 and node["capacity"]["disk"] > 0
    assert report == {**report, "epoch_seen": 0, "instances": []}
    count = len(reconciler.reports)
    wait_for("heartbeat reports", lambda: len(reconciler.reports) >= count + 3)


def test_assigned_instances_fetch_the_image_and_serve_on_their_ports(agent, reconciler, image_server, tmp_path):
    handle = agent()
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER),
                       assignment("hello-env-1", image_server, ["python", "envserver.py", "${PORT}"],
                                  env={"GREETING": "hi"})], epoch=1)
    web = wait_for("hello-web-1 running", lambda: running(reconciler, "hello-web-1"))
    envi = wait_for("hello-env-1 running", lambda: running(reconciler, "hello-env-1"))
    assert web["ready"] and web["port"] != envi["port"]
    assert requests.get(f"http://127.0.0.1:{web['port']}/hello.txt", timeout=5).text == "hello from the image\n"
    seen = requests.get(f"http://127.0.0.1:{envi['port']}/", timeout=5).json()
    venv = str(handle.images_dir / IMAGE.split(":")[1] / "venv")
    assert {k: seen["env"].get(k) for k in ("PORT", "CORRAL_APP", "CORRAL_PROCESS", "CORRAL_INSTANCE",
                                            "CORRAL_NODE", "GREETING", "VIRTUAL_ENV")} == {
        "PORT": str(envi["port"]), "CORRAL_APP": "hello", "CORRAL_PROCESS": "web",
        "CORRAL_INSTANCE": "hello-env-1", "CORRAL_NODE": NODE, "GREETING": "hi", "VIRTUAL_ENV": venv}
    assert seen["env"]["PATH"].startswith(venv + "/bin:")
    assert seen["cwd"] == os.path.realpath(handle.images_dir / IMAGE.split(":")[1] / "app")
    assert len(image_server[2]) == 2, "two instances of one image must share one download of each layer"
    assert reconciler.latest()["epoch_seen"] == 1
    assert (handle.data_dir / "logs" / "hello-web-1" / "output.log").exists()

    before = {i["id"]: i["pid"] for i in reconciler.latest()["instances"]}
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER),
                       assignment("hello-env-1", image_server, ["python", "envserver.py", "${PORT}"],
                                  env={"GREETING": "hi"})], epoch=1)
    count = len(reconciler.reports)
    wait_for("two more reports", lambda: len(reconciler.reports) >= count + 2)
    assert {i["id"]: (i["pid"], i["state"]) for i in reconciler.latest()["instances"]} == {
        iid: (pid, "running") for iid, pid in before.items()}, "the same assign twice must change nothing"


def test_a_wrong_sha256_fails_the_instance_and_unpacks_nothing(agent, reconciler, image_server):
    handle = agent()
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER, sha256="0" * 64)], epoch=1)
    inst = wait_for("a failed instance", lambda: (i := reconciler.instance("hello-web-1")) and i["state"] == "failed" and i)
    assert "expected " + "0" * 64 in inst["message"]
    assert not os.path.exists(handle.images_dir / IMAGE.split(":")[1]), "no image folder for a bad layer"
    assert os.listdir(handle.images_dir / "code") == [], "nothing of the bad code layer is left"


def test_a_stale_epoch_is_refused(agent, reconciler, image_server):
    agent()
    web = assignment("hello-web-1", image_server, HTTP_SERVER)
    reconciler.assign([web], epoch=5)
    pid = wait_for("hello-web-1 running", lambda: running(reconciler, "hello-web-1"))["pid"]
    reconciler.assign([], epoch=4)
    reconciler.assign([web, assignment("hello-web-2", image_server, HTTP_SERVER)], epoch=5)
    wait_for("hello-web-2 running", lambda: running(reconciler, "hello-web-2"))
    assert running(reconciler, "hello-web-1")["pid"] == pid
    assert reconciler.latest()["epoch_seen"] == 5


def test_an_assign_for_another_node_is_ignored(agent, reconciler, image_server):
    agent()
    web = assignment("hello-web-1", image_server, HTTP_SERVER)
    reconciler.assign([web], epoch=1)
    wait_for("hello-web-1 running", lambda: running(reconciler, "hello-web-1"))
    reconciler.server.send(NODE.encode(), "assign", {"node": "node-2", "instances": []}, 2)
    reconciler.assign([web, assignment("hello-web-2", image_server, HTTP_SERVER)], epoch=1)
    wait_for("hello-web-2 running", lambda: running(reconciler, "hello-web-2"))
    assert running(reconciler, "hello-web-1") and reconciler.latest()["epoch_seen"] == 1


def test_removal_kills_the_whole_group_after_the_grace_period(agent, reconciler, image_server, tmp_path):
    agent()
    pidfile = tmp_path / "stubborn.pids"
    reconciler.assign([assignment("hello-stubborn-1", image_server, ["python", "stubborn.py"], port=False,
                                  env={"PIDFILE": str(pidfile)}, grace=0.5)], epoch=1)
    wait_for("hello-stubborn-1 running", lambda: running(reconciler, "hello-stubborn-1"))
    leader, child = map(int, wait_for("the pid file", lambda: pidfile.exists() and pidfile.read_text()).split())
    assert not pid_gone(child)
    reconciler.assign([], epoch=1)
    wait_for("a stopping report", lambda: (i := reconciler.instance("hello-stubborn-1")) and i["state"] == "stopping")
    final = wait_for("the stopped report", lambda: next(
        (i for r in reconciler.reports for i in r["instances"]
         if i["id"] == "hello-stubborn-1" and i["state"] == "stopped"), None))
    assert "SIGKILL" in final["message"] and final["ready"] is False
    wait_for("the instance forgotten", lambda: reconciler.instance("hello-stubborn-1") is None)
    assert pid_gone(leader) and pid_gone(child), "no process and no zombie of the group may be left"


def test_a_removed_instance_is_reported_not_ready_and_keeps_serving_while_it_drains(agent, reconciler, image_server):
    agent()
    web = assignment("hello-web-1", image_server, HTTP_SERVER)
    web["spec"]["drainPeriod"] = 3.0
    reconciler.assign([web], epoch=1)
    port = wait_for("hello-web-1 running", lambda: running(reconciler, "hello-web-1"))["port"]
    reconciler.assign([], epoch=1)
    inst = wait_for("a stopping report", lambda: (i := reconciler.instance("hello-web-1")) and i["state"] == "stopping" and i)
    assert inst["ready"] is False
    assert requests.get(f"http://127.0.0.1:{port}/hello.txt", timeout=1).status_code == 200
    wait_for("the instance forgotten", lambda: reconciler.instance("hello-web-1") is None)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/hello.txt", timeout=1)


def test_an_instance_replaced_while_its_node_was_lost_stops_without_its_drain(agent, reconciler, image_server):
    """No ready list has held it since its node was lost: the drain would protect no client, and
    the stale copy would only run beside its replacement."""
    agent()
    web = assignment("hello-web-1", image_server, HTTP_SERVER)
    web["spec"]["drainPeriod"] = 60.0
    reconciler.assign([web], epoch=1)
    port = wait_for("hello-web-1 running", lambda: running(reconciler, "hello-web-1"))["port"]
    reconciler.assign([], epoch=1, replaced=["hello-web-1"])
    wait_for("the instance forgotten well within its drain period", lambda: reconciler.instance("hello-web-1") is None,
             timeout=15)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/hello.txt", timeout=1)


def test_an_instance_that_exits_is_restarted_and_counted(agent, reconciler, image_server):
    agent()
    reconciler.assign([assignment("hello-crash-1", image_server, ["python", "-c", "raise SystemExit(3)"],
                                  port=False)], epoch=1)
    inst = wait_for("a restart", lambda: (i := reconciler.instance("hello-crash-1")) and i["restarts"] >= 1 and i)
    assert inst["exit_code"] == 3 and "exited with code 3" in inst["message"]


def test_an_instance_with_restart_never_stays_down(agent, reconciler, image_server):
    agent()
    reconciler.assign([assignment("hello-once-1", image_server, ["python", "-c", "raise SystemExit(2)"],
                                  port=False, restart="never")], epoch=1)
    inst = wait_for("a failed instance", lambda: (i := reconciler.instance("hello-once-1")) and i["state"] == "failed" and i)
    assert (inst["exit_code"], inst["message"], inst["restarts"], inst["pid"]) == (2, "exited with code 2", 0, None)


def test_a_missing_command_fails_with_a_message(agent, reconciler, image_server):
    agent()
    reconciler.assign([assignment("hello-bad-1", image_server, ["no-such-program"], port=False)], epoch=1)
    inst = wait_for("a failed instance", lambda: (i := reconciler.instance("hello-bad-1")) and i["state"] == "failed" and i)
    assert "'no-such-program' was not found" in inst["message"]


def test_sigint_stops_every_instance_and_the_agent(agent, reconciler, image_server):
    handle = agent()
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER),
                       assignment("hello-web-2", image_server, HTTP_SERVER)], epoch=1)
    pids = [wait_for(f"{iid} running", lambda iid=iid: running(reconciler, iid))["pid"]
            for iid in ("hello-web-1", "hello-web-2")]
    handle.proc.send_signal(signal.SIGINT)
    assert handle.proc.wait(timeout=WAIT) == 0
    assert all(pid_gone(pid) for pid in pids)
    stopped = {i["id"] for r in reconciler.reports for i in r["instances"] if i["state"] == "stopped"}
    assert stopped == {"hello-web-1", "hello-web-2"}


def test_a_restarted_agent_keeps_fencing(agent, reconciler, image_server):
    first = agent()
    reconciler.assign([], epoch=7)
    wait_for("epoch 7 seen", lambda: reconciler.latest()["epoch_seen"] == 7)
    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=WAIT) == 0
    reconciler.reports.clear()
    agent()
    assert reconciler.latest()["epoch_seen"] == 7
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER)], epoch=6)
    reconciler.assign([assignment("hello-web-2", image_server, HTTP_SERVER)], epoch=7)
    wait_for("hello-web-2 running", lambda: running(reconciler, "hello-web-2"))
    assert reconciler.instance("hello-web-1") is None
