"""The README is a test: ``./up`` and the quickstart, as a newcomer meets them.

A copy of the checkout's files (what a fresh clone holds) in a scratch
folder; ``./up`` run there with a scratch HOME and its own ports (its options
pass through to ``corral up``), until it prints where the example serves and
both addresses answer. Then every command of the README's quickstart block,
parsed out of README.md (tests/e2e/readme.py), in order, each checked for
what the README implies; then SIGINT, as Ctrl-C, and nothing of corral may
be left running: no daemon, no instance process, by pid.

Two newcomers: root with its data outside root's home (app users on: each
app as its own user), and an ordinary user with the distribution's
``python3`` (``/usr/bin/python3``) and its data in its own home, who runs
the read-only part.
"""
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from tests.e2e.cluster import cmdline, free_base_port, instance_owners, instance_processes, wait_for
from tests.e2e.installed import copy_checkout
from tests.e2e.readme import EXPECT, quickstart
from tests.support import need_root

DISTRIBUTION_PYTHON = "/usr/bin/python3"   # first on the ordinary user's PATH, as on a fresh server
NEWCOMER = "corralreadme"        # the ordinary user of the second variant (made when missing)
UP_TIMEOUT = 600                 # seconds for ./up to make its venv, start, build and serve
SERVING = re.compile(r"^app/hello is serving: .* at (?P<urls>http://\S+(?: http://\S+)*)$", re.M)
READ_ONLY = {("get", "nodes"), ("get", "instances"), ("get", "apps"), ("describe", "app")}


class Newcomer:
    """A user with a scratch home, a copy of the checkout, and ``./up`` running in it."""

    def __init__(self, base, user):
        self.user = user
        self.base = base
        self.home = os.path.join(base, "home")
        self.clone = os.path.join(base, "corral")
        os.makedirs(self.home)
        copy_checkout(self.clone)
        pip = os.path.expanduser("~/.config/pip")   # the operator's package index settings, as a user has them
        if os.path.isdir(pip):
            shutil.copytree(pip, os.path.join(self.home, ".config", "pip"))
        self.port = free_base_port()
        if user != "root":
            subprocess.run(["chown", "-R", f"{user}:{user}", base], check=True)
        self.log_path = os.path.join(base, "up.log")
        self.log = open(self.log_path, "w")
        self.up = subprocess.Popen(self.argv(["./up", "--base-port", str(self.port), "--router-port",
                                              str(self.port + 20)]), cwd=self.clone,
                                   stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def argv(self, args):
        """``args`` run as this user, with a login's environment and nothing of the test's."""
        env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("LANG", "TERM")}
        env.update(HOME=self.home, USER=self.user, LOGNAME=self.user,
                   PATH=os.environ["PATH"] if self.user == "root" else "/usr/local/bin:/usr/bin:/bin")
        prefix = ["env", "-i"] + [f"{k}={v}" for k, v in sorted(env.items())]
        if self.user != pwd.getpwuid(os.geteuid()).pw_name:
            prefix = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.user, "--"] + prefix
        return prefix + args

    def run(self, argv, timeout=300, **kw):
        return subprocess.run(self.argv(argv), cwd=self.clone, capture_output=True, text=True, timeout=timeout, **kw)

    def corral(self, *args, timeout=300):
        return self.run([".venv/bin/corral", *args], timeout=timeout)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def tail(self, n=15):
        return "".join(self.output().splitlines(keepends=True)[-n:])

    def serving(self):
        """The URLs ``./up`` printed for the example once it serves; fails at once on a failure it printed."""
        if self.up.poll() is not None:
            raise AssertionError(f"./up exited with {self.up.returncode}:\n{self.tail()}")
        out = self.output()
        failed = [line for line in out.splitlines() if line.startswith("corral up: app/hello")]
        if failed:
            raise AssertionError(f"./up said the example fails: {failed[0]}\n{self.tail()}")
        found = SERVING.search(out)
        return found and found.group("urls").split()

    def ours(self):
        """Pids of every process of this newcomer's corral: its daemons (run from the copy) and the example."""
        mine = [int(p) for p in os.listdir("/proc") if p.isdigit() and any(self.clone in a for a in cmdline(int(p)))]
        return set(mine) | set(instance_processes("hello", under=self.base))

    def stop(self, timeout=90):
        """Ctrl-C: SIGINT to ./up's process group, as a terminal sends it; returns its exit code."""
        os.killpg(self.up.pid, signal.SIGINT)
        try:
            return self.up.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"./up did not stop within {timeout}s of SIGINT:\n{self.tail()}") from None

    def cleanup(self):
        for pid in self.ours() | ({self.up.pid} if self.up.poll() is None else set()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()


def get_ok(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200, f"{url} answered {r.status}"
        return json.loads(r.read())


def instances(who):
    r = who.corral("get", "instances", "-o", "json")
    assert r.returncode == 0, r.stderr
    return [i for i in json.loads(r.stdout) if i["app"] == "hello" and i["desired"]]


def check_step(who, step, scratch):
    """Run one quickstart step as the README writes it and check what it implies."""
    verb = step.verb
    assert verb in EXPECT, f"README command {step.line!r} has no expectation in tests/e2e/readme.py"
    argv = list(step.argv)
    if verb == ("backup",):
        argv[argv.index("--to") + 1] = scratch   # the README's /tmp, kept clean by the test
    if verb == ("diff",) and any("instances: 3" in note for note in step.notes):
        path = os.path.join(who.clone, argv[argv.index("-f") + 1])
        with open(path) as f:
            text = f.read()
        assert "instances: 2" in text
        with open(path, "w") as f:
            f.write(text.replace("instances: 2", "instances: 3"))
    if verb == ("logs",):
        return check_logs(who, argv)
    r = who.run(argv, input="print(6 * 7)\n" if verb == ("exec",) else None)
    said = f"{step.line} -> {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    assert "Traceback" not in r.stderr, said
    if verb == ("diff",):
        assert r.returncode == 1 and re.search(r"^[-+].*instances", r.stdout, re.M), said
        return
    assert r.returncode == 0, said
    if verb == ("get", "nodes"):
        rows = [line.split() for line in r.stdout.splitlines()[1:]]
        assert sorted((row[0], row[1]) for row in rows) == [("node-1", "ready"), ("node-2", "ready")], said
    elif verb == ("get", "instances"):
        rows = [line.split() for line in r.stdout.splitlines()[1:] if line.startswith("hello-")]
        assert len(rows) == 2 and all("running" in row for row in rows), said
        for row in rows:
            get_ok("http://" + next(w for w in row if re.match(r"^[0-9.]+:[0-9]+$", w)) + "/")
    elif verb == ("get", "apps"):
        assert [a["name"] for a in json.loads(r.stdout)] == ["hello"], said
    elif verb == ("describe", "app"):
        for part in ("hello", "Conditions", "Instances", "Events", "waitress-serve"):
            assert part in r.stdout, f"no {part!r} in: {said}"
    elif verb == ("apply",):
        assert "app/hello available: 3 of 3 instances ready" in r.stdout, said
    elif verb == ("exec",):
        assert r.stdout.strip().splitlines()[-1] == "42", said
    elif verb == ("rollout", "history"):
        assert re.search(r"^\s*1\s", r.stdout, re.M), said
    elif verb == ("node", "drain"):
        insts = instances(who)
        assert insts and all(i["node"] == "node-2" for i in insts), f"{said}\n{insts}"
    elif verb == ("backup",):
        written = [f for f in os.listdir(scratch) if f.endswith(".json") or "backup" in f]
        assert written, f"no backup file in {scratch}: {said}"
    elif verb == ("delete", "app"):
        wait_for("no instance process of hello", lambda: not instance_processes("hello", under=who.base), timeout=60)
        assert instances(who) == []


def check_logs(who, argv):
    """``logs -f`` prints the instances' output and keeps following until Ctrl-C, then exits 0."""
    proc = subprocess.Popen(who.argv(argv), cwd=who.clone, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert first.strip(), f"logs -f printed nothing: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert proc.poll() is None, "logs -f ended by itself"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


def newcomer_up(base, user, steps):
    """``./up`` as ``user``, the example serving, ``steps`` run, Ctrl-C, and nothing left."""
    who = Newcomer(base, user)
    try:
        urls = wait_for("./up to print where the example serves", who.serving, timeout=UP_TIMEOUT, interval=1)
        assert len(urls) == 2
        for url in urls:
            assert get_ok(url)["app"] == "hello"
        who.app_uids = set(instance_owners("hello", under=base).values())
        assert who.app_uids, "no instance process of the example found in this newcomer's folders"
        scratch = tempfile.mkdtemp(prefix="corral-readme-backup-", dir=base)
        if user != "root":
            shutil.chown(scratch, user, user)
        for step in steps:
            check_step(who, step, scratch)
        assert who.ours(), "no process of the cluster found before the stop"
        assert who.stop() == 0, who.tail()
        deadline = time.monotonic() + 30   # exited processes may wait a moment to be reaped
        while who.ours() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = who.ours()
        assert not left, "still running after Ctrl-C: " + "; ".join(" ".join(cmdline(p))[:120] for p in left)
        return who
    finally:
        who.cleanup()


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix="corral-readme-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_readme_as_root_with_data_outside_roots_home(base):
    need_root("the README's ./up as root, with app users on")
    who = newcomer_up(base, "root", quickstart())
    assert "apps run as you here" not in who.output()
    assert who.app_uids == {pwd.getpwnam("corral-hello").pw_uid}, "the example ran as its own user, not root"


def test_readme_as_an_ordinary_user_with_the_systems_python(base):
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        if subprocess.run(["id", NEWCOMER], capture_output=True).returncode:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", NEWCOMER], check=True)
        user = NEWCOMER
    who = newcomer_up(base, user, [s for s in quickstart() if s.verb in READ_ONLY])
    out = who.output()
    assert who.app_uids == {pwd.getpwnam(user).pw_uid}
    assert out.count("apps run as you here") == 1, "one line says apps share the user's identity"
    assert not [line for line in out.splitlines() if " WARNING " in line], "no warnings for the setup it chose"
    if os.path.exists(DISTRIBUTION_PYTHON):
        with open(os.path.join(who.clone, ".venv", "pyvenv.cfg")) as f:
            assert re.search(r"^home = /usr/bin$", f.read(), re.M), "./up made its venv from the system's python3"
