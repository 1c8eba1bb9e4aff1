"""corral logs and corral exec on a whole cluster started with `corral up`, as a user runs them.

One cluster for the module; the app crashes whenever its trigger file appears,
so a test can make a crash (and the restart after it) happen on purpose.
"""
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
import yaml

from tests.e2e.cluster import UpCluster, wait_for
from tests.e2e.installed import corral_bin

APP = """\
import http.server, os, sys, threading, time
print("boot " + os.environ["CORRAL_INSTANCE"], flush=True)
print("to-stderr", file=sys.stderr, flush=True)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while True:
    if os.path.exists(os.environ["TRIGGER"]):
        os.remove(os.environ["TRIGGER"])
        raise RuntimeError("crash-for-the-test")
    time.sleep(0.1)
"""


def manifest(workdir, revision):
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "crashy"},
           "spec": {"source": "./src", "env": {"TRIGGER": os.path.join(workdir, "trigger"),
                                               "SECRET_WORD": "marmalade", "REVISION": str(revision)},
                    "processes": {"web": {"command": "python app.py", "instances": 1, "port": True,
                                          "stopGracePeriod": "2s", "drainPeriod": "0s"}}}}
    path = os.path.join(workdir, "app.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("logs-exec")
    os.makedirs(work / "src")
    (work / "src" / "app.py").write_text(APP)
    c = UpCluster(work, nodes=1)
    c.work = str(work)
    try:
        c.corral("apply", "-f", manifest(c.work, 1), "--wait", "--timeout", "120s")
        yield c
    finally:
        c.down()


def instance(cluster):
    found = [i for i in cluster.instances("crashy") if i["state"] == "running"]
    return found[0] if found else None


class Follower:
    """`corral logs crashy -f` in the background; its output gathered as it comes."""

    def __init__(self, cluster, *args):
        self.proc = subprocess.Popen([corral_bin(), "logs", "crashy", "-f", *args],
                                     env=cluster.env, cwd=cluster.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out, self.err = [], []
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, i=into: [i.append(line) for line in s], daemon=True).start()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(30)


def test_logs_show_stdout_and_stderr(cluster):
    inst = wait_for("a running instance", lambda: instance(cluster))
    out = wait_for("the first lines", lambda: (lambda r: r.stdout if "to-stderr" in r.stdout else None)(
        cluster.corral("logs", "crashy", "--tail", "10")))
    assert f"boot {inst['id']}" in out
    stamped = cluster.corral("logs", "crashy", "--timestamps", "--tail", "1").stdout
    assert stamped.startswith("20") and "Z " in stamped


def test_follow_through_a_crash_and_restart_then_previous_shows_the_traceback(cluster):
    inst = wait_for("a running instance", lambda: instance(cluster))
    follower = Follower(cluster)
    try:
        wait_for("the follower's first line", lambda: any("boot" in line for line in follower.out))
        open(os.path.join(cluster.work, "trigger"), "w").close()
        wait_for("the crash and the restart in the followed log",
                 lambda: sum("boot" in line for line in follower.out) >= 2
                 and any("RuntimeError: crash-for-the-test" in line for line in follower.out), timeout=60)
        assert "exited with code 1" in "".join(follower.err)
    finally:
        assert follower.stop() == 0
    previous = cluster.corral("logs", "crashy", "--previous").stdout
    assert "Traceback (most recent call last)" in previous and "RuntimeError: crash-for-the-test" in previous
    assert previous.count("boot") == 1
    assert wait_for("the restarted instance", lambda: instance(cluster))["id"] == inst["id"]
    restarted = wait_for("the restart as an event of the app", lambda: [
        e for e in cluster.json("get", "events") if e["reason"] == "BackOff" and inst["id"] in e["message"]])
    assert "exited with code 1" in restarted[0]["message"] and "node-1" in restarted[0]["message"]
    assert "BackOff" in cluster.corral("describe", "app", "crashy").stdout


def test_follow_through_a_rolling_update(cluster):
    old = wait_for("a running instance", lambda: instance(cluster))
    follower = Follower(cluster)
    try:
        wait_for("the follower's first line", lambda: any("boot" in line for line in follower.out))
        cluster.corral("apply", "-f", manifest(cluster.work, 2), "--wait", "--timeout", "120s")
        new = wait_for("the new revision's instance",
                       lambda: (lambda i: i if i and i["id"] != old["id"] else None)(instance(cluster)))
        wait_for("the new instance's output in the followed log",
                 lambda: any(f"boot {new['id']}" in line for line in follower.out), timeout=60)
        wait_for("the old instance's end to be said",
                 lambda: any(f"instance {old['id']} ended" in line for line in follower.err), timeout=60)
    finally:
        assert follower.stop() == 0


def test_exec_runs_in_the_instance_environment_with_its_exit_code_and_is_audited(cluster):
    inst = wait_for("a running instance", lambda: instance(cluster))
    r = cluster.corral("exec", "crashy", "--", "python", "-c",
                       "import os, sys; print(os.environ['SECRET_WORD'], os.environ['CORRAL_INSTANCE'], "
                       "os.path.isfile('app.py')); sys.exit(7)", check=False, input="")
    assert r.returncode == 7 and r.stdout.split() == ["marmalade", inst["id"], "True"]
    r = cluster.corral("exec", "crashy", "--", "python", check=False, input="print(6 * 7)\n")
    assert (r.returncode, r.stdout) == (0, "42\n")
    events = cluster.json("get", "events")
    finished = [e for e in events if e["reason"] == "ExecFinished"]
    assert any("exited with code 7" in e["message"] and inst["id"] in e["message"] for e in finished)
    assert any(e["reason"] == "Exec" and "SECRET_WORD" in e["message"] and "@" in e["actor"] for e in events)
    assert "ExecFinished" in cluster.corral("describe", "app", "crashy").stdout


def test_unknown_app_and_instance_are_one_sentence(cluster):
    r = cluster.corral("exec", "crashy", "--instance", "crashy-web-nope", "--", "true", check=False)
    assert r.returncode == 1 and r.stderr.strip() == "error: instance 'crashy-web-nope' of app 'crashy' not found"
    r = cluster.corral("logs", "no-such-app", check=False)
    assert r.returncode == 1 and r.stderr.strip() == "error: app 'no-such-app' not found"


def read_until(fd, token, seen, timeout=30):
    deadline = time.monotonic() + timeout
    while token not in seen[0] and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen[0] += os.read(fd, 4096)
            except OSError:
                break
    return token in seen[0]


def test_interactive_exec_under_a_real_terminal(cluster):
    wait_for("a running instance", lambda: instance(cluster))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([corral_bin(), "exec", "crashy", "--", "python", "-q"],
                            env=cluster.env, cwd=cluster.workdir, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    seen = [b""]
    try:
        assert read_until(master, b">>> ", seen), seen[0][-200:]
        os.write(master, b"import shutil; print(sum(range(10)), shutil.get_terminal_size())\r")
        assert read_until(master, b"columns=97, lines=31", seen), seen[0][-200:]
        assert b"45" in seen[0]
        os.write(master, b"import time; print('nap' + 'ping', flush=True); time.sleep(60)\r")
        assert read_until(master, b"napping", seen), seen[0][-200:]  # Ctrl-C now interrupts the sleep
        os.write(master, b"\x03")
        assert read_until(master, b"KeyboardInterrupt", seen), seen[0][-200:]
        os.write(master, b"exit(3)\r")
        assert proc.wait(30) == 3
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_an_unreachable_node_is_one_sentence_not_a_hang(cluster):
    inst = wait_for("a running instance", lambda: instance(cluster))
    agent = cluster.daemons("agent")["node-1"]
    os.kill(agent, signal.SIGSTOP)
    try:
        wait_for("the node to be unreachable", lambda: any(
            i["state"] == "unknown" for i in cluster.instances("crashy")), timeout=30)
        r = cluster.corral("exec", "crashy", "--", "true", check=False, timeout=60)
        assert r.returncode == 1 and r.stderr.strip() == f"error: node node-1 of instance {inst['id']} is unreachable"
        r = cluster.corral("logs", "crashy", check=False, timeout=60)
        assert r.returncode == 1 and "node node-1 of instance" in r.stderr and "unreachable" in r.stderr
    finally:
        os.kill(agent, signal.SIGCONT)
