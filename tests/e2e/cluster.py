"""A whole corral cluster for end-to-end tests, started the way a user starts one.

:class:`UpCluster` runs ``corral up`` (the installed console script, see
:mod:`tests.e2e.installed`) in a scratch folder with its own ports,
config and (short) timings, and drives it with the ``corral`` command. It
finds the daemons it started and the instance processes of an app from
/proc, so tests can kill them and check that nothing is left behind.
"""
import json
import os
import signal
import subprocess
import threading
import time

import yaml

from tests.e2e.installed import ROOT, corral_bin
from tests.support import free_base_port  # noqa: F401 (the e2e tests' import of it)

FAST = {"heartbeat": 0.5, "heartbeat_timeout": 3, "node_grace": 8, "lease_ttl": 3,
        "lease_renew": 0.5, "loop_interval": 0.5, "build_poll": 0.2}


def wait_for(what, predicate, timeout=60.0, interval=0.25):
    """Poll ``predicate`` until it returns something truthy; fail saying ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def proc_environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    except OSError:
        return {}


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2]
    except OSError:
        return None


def instance_processes(app, under=None):
    """PIDs of live (non-zombie) processes whose environment says CORRAL_APP=app; with ``under``, only
    those whose working folder is inside it (one cluster's, where other clusters on the machine may
    run an app of the same name)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and proc_environ(pid).get(b"CORRAL_APP") == app.encode():
            if proc_state(pid) not in (None, "Z") and (under is None or _works_in(pid, under)):
                found.append(int(pid))
    return found


def instance_owners(app, under):
    """``{pid: uid}`` of the live processes :func:`instance_processes` finds. Each process is read
    through one open ``/proc/PID`` folder, which stays bound to the process it was opened for: a pid
    reused meanwhile by another process (pids wrap around quickly while other tests run) then reads
    as gone instead of lending its owner to the app (seen: a uid of another test's app)."""
    owners = {}
    for pid in instance_processes(app, under):
        try:
            fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            uid = os.fstat(fd).st_uid
            with open(os.open("environ", os.O_RDONLY, dir_fd=fd), "rb") as f:
                environ = f.read()
            if f"CORRAL_APP={app}".encode() in environ.split(b"\0"):
                owners[pid] = uid
        except OSError:
            pass
        finally:
            os.close(fd)
    return owners


def _works_in(pid, folder):
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return os.path.commonpath([os.path.realpath(folder), cwd]) == os.path.realpath(folder)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


class LoadLoop:
    """Requests sent from a thread of its own while a ``with`` block runs; a subclass's ``run``
    sends them until ``stopping`` is set and counts ``ok``, ``failures`` and ``greetings``."""

    def __init__(self):
        self.ok, self.failures, self.greetings = 0, [], set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(10)


class UpCluster:
    """``corral up`` in ``workdir``, with its own ports, config and timings."""

    def __init__(self, workdir, nodes=2, store=None, timings=FAST, apply=()):
        self.workdir = str(workdir)
        self.base = free_base_port()
        self.router_port = self.base + 20   # and its health on + 21: inside the span free_base_port checked
        settings = os.path.join(self.workdir, "settings.yaml")
        with open(settings, "w") as f:
            yaml.safe_dump(timings, f)
        self.env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(self.workdir, "config"))
        self.env.pop("CORRAL_API", None)
        self.env.pop("CORRAL_TOKEN", None)
        self.log_path = os.path.join(self.workdir, "up.log")
        argv = [corral_bin(), "up", "--data-dir", os.path.join(self.workdir, "data"),
                "--nodes", str(nodes), "--base-port", str(self.base), "--router-port", str(self.router_port),
                "--settings", settings]
        if store:
            argv += ["--store", store]
        for path in apply:
            argv += ["--apply", path]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.workdir)
        try:
            wait_for(f"{nodes} ready nodes", lambda: self._ready_nodes() >= nodes, timeout=60)
        except AssertionError:
            self.down()
            raise AssertionError("corral up did not come up: " + self.tail())

    def _ready_nodes(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"corral up exited with {self.proc.returncode}: {self.tail()}")
        r = self.corral("get", "nodes", "-o", "json", check=False)
        if r.returncode:
            return 0
        return len([n for n in json.loads(r.stdout) if n["state"] == "ready"])

    def tail(self, n=30):
        """The last ``n`` lines of ``corral up``'s output (also after :meth:`down` closed it)."""
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return "".join(f.readlines()[-n:])

    def corral(self, *args, check=True, timeout=240, input=None):
        """Run the ``corral`` command against this cluster."""
        r = subprocess.run([corral_bin(), *args], env=self.env, cwd=self.workdir,
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode:
            raise AssertionError(f"corral {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}\n"
                                 f"--- up.log ---\n{self.tail()}")
        return r

    def json(self, *args):
        return json.loads(self.corral(*args, "-o", "json").stdout)

    def instances(self, app):
        return [i for i in self.json("get", "instances") if i["app"] == app]

    def daemons(self, kind):
        """``{name: pid}`` of this cluster's running daemons of one kind (reconciler, agent, builder; the router,
        which has no name, as ``router``)."""
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or proc_state(pid) in (None, "Z"):
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            argv = cmdline(pid)
            if ppid == self.proc.pid and argv[1:4] == ["-m", "corral", kind]:
                out[argv[argv.index("--name") + 1] if "--name" in argv else kind] = int(pid)
        return out

    def leader(self):
        """``(name, pid)`` of the reconciler that leads now."""
        lead = self.lead()
        return lead and lead[:2]

    def lead(self):
        """``(name, pid, epoch)`` of the reconciler that leads now, or None."""
        import requests
        for name, pid in sorted(self.daemons("reconciler").items()):
            try:  # reconciler rN serves its API on base + 10 (N - 1)
                h = requests.get(f"http://127.0.0.1:{self.base + 10 * (int(name[1:]) - 1)}/healthz", timeout=2).json()
            except requests.RequestException:
                continue
            if h.get("leader"):
                return name, pid, h["epoch"]
        return None

    def heard_by(self, reconciler, after):
        """Whether reconciler ``reconciler`` (``r1``, ``r2``) has heard every node at or after the
        wall-clock time ``after``, by its own API (``last_seen`` is cut to whole seconds, so it errs late)."""
        import calendar
        url = f"http://127.0.0.1:{self.base + 10 * (int(reconciler[1:]) - 1)}"
        r = subprocess.run([corral_bin(), "get", "nodes", "-o", "json"], env=dict(self.env, CORRAL_API=url),
                           cwd=self.workdir, capture_output=True, text=True, timeout=30)
        if r.returncode:
            return False
        seen = [n.get("last_seen") for n in json.loads(r.stdout)]
        return bool(seen) and all(
            s and calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) >= after for s in seen)

    def down(self):
        """Stop the cluster as Ctrl-C would; return up's exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def app_copy(workdir, name, instances=2, env=None):
    """The hello example copied into ``workdir`` under another name; returns the manifest path."""
    import shutil
    src = os.path.join(ROOT, "manifests", "examples")
    dest = os.path.join(str(workdir), "manifests")
    if not os.path.exists(dest):
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*"))
    with open(os.path.join(src, "hello.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["metadata"]["name"] = name
    doc["spec"]["processes"]["web"]["instances"] = instances
    if env:
        doc["spec"]["env"].update(env)
    path = os.path.join(dest, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path
