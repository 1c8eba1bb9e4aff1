"""A corral cluster spread over the hosts of a :class:`~tests.cluster.netns.Datacentre`.

Hosts: ``store`` (PostgreSQL), ``r1`` and ``r2`` (reconcilers), ``n1``..``n3``
(node agents), ``rt`` (a router on both reconcilers' route feeds). The builder sits on the operator's seat (the bridge address in
the root namespace), where the package index is reachable. Every daemon is started with
``ip netns exec`` in its host's namespace and binds that host's address, so
cutting a host's link really cuts it off. The test process sits on the
operator address of the bridge and talks to the API like a user, with the
``corral`` command (``CORRAL_API`` / ``CORRAL_TOKEN``) or plain HTTP.

:class:`Daemon` can be SIGKILLed, SIGSTOPped, SIGCONTed and restarted with
the same arguments. :meth:`Fleet.down` stops what runs and kills what is left,
including instance processes (found by their environment: ``CORRAL_APP`` set,
``VIRTUAL_ENV`` inside the fleet's folder), and fails the test naming what it
had to kill: a daemon that ignored SIGINT, an instance its agent left running.
"""
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests
import yaml

from corral import units
from corral.auth import api_token
from corral.wire.keys import new_key_file, read_key
from tests.e2e.cluster import proc_environ, proc_state, wait_for
from tests.pg import _pg_bin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")   # the venv's script, as a unit runs it
APP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app")

HOSTS = ["store", "r1", "r2", "n1", "n2", "n3", "rt"]
NODES = ["n1", "n2", "n3"]

# Short timings, as the e2e suite uses: unreachable after 3 s, lost after 8 s.
TIMINGS = {"heartbeat": 0.5, "heartbeat_timeout": 3, "node_grace": 8, "lease_ttl": 3,
           "lease_renew": 0.5, "loop_interval": 0.5, "build_poll": 0.2}

API_PORT, BUS_PORT, BUILDER_PORT, ROUTES_PORT, PG_PORT, ROUTER_PORT = 7070, 7071, 7072, 7073, 5432, 8080


class Daemon:
    """One daemon process in one namespace; the pid is the daemon's own (``ip netns exec`` execs)."""

    def __init__(self, name, argv, log_path, env=None):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc = None
        self.starts = 0

    def start(self):
        """Start (or start again) with the same arguments; output appends to the log."""
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True, cwd=ROOT)
        self.starts += 1
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        """SIGKILL and reap."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self, timeout=30):
        """SIGINT (the clean stop), then SIGKILL after ``timeout``; returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class NetnsPostgres:
    """A throwaway PostgreSQL server inside the ``store`` host, listening on its address."""

    def __init__(self, dc, workdir):
        self.dc = dc
        self.host = dc.hosts["store"]
        self.bin = _pg_bin()
        self.root = tempfile.mkdtemp(prefix="corral-netpg-")   # readable by postgres, unlike pytest's tmp
        self.data = os.path.join(self.root, "data")
        self.sockets = os.path.join(self.root, "sock")
        self.log = os.path.join(self.root, "server.log")
        os.makedirs(self.sockets)
        subprocess.run(["chown", "-R", "postgres:postgres", self.root], check=True)
        self._pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {dc.operator.rsplit('.', 1)[0]}.0/24 trust\n")

    @property
    def dsn(self):
        return f"postgresql://postgres@{self.host.address}:{PG_PORT}/postgres"

    def _pg(self, tool, *args):
        argv = self.dc.argv("store", ["runuser", "-u", "postgres", "--", os.path.join(self.bin, tool), *args])
        done = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if done.returncode:
            raise RuntimeError(f"{tool} failed in the store namespace: {done.stderr.strip() or done.stdout.strip()}")

    def start(self):
        """Start the server and wait until it accepts connections."""
        self._pg("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o",
                 f"-p {PG_PORT} -k {self.sockets} -c listen_addresses={self.host.address} -c fsync=off "
                 f"-c max_connections=200", "start")

    def stop(self, mode="fast"):
        """``fast``: a clean stop; ``immediate``: as a crash."""
        self._pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def destroy(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


class Fleet:
    """Two reconcilers, a builder and three agents on the datacentre, on one PostgreSQL store.

    Agents share the builder's images dir unless ``agent_images_dirs`` gives
    one its own (then it fetches images from the builder over the link), and
    keep their state under the workdir unless ``agent_data_dirs`` says where.
    ``release_env``: the environment every daemon starts in (default: the
    test's), e.g. a PYTHONPATH that runs an older release of corral; ``release_argv(argv)``, the
    command line that release's unit held instead of this one's (``unit_argv`` keeps this
    release's, for an upgrade). Every daemon runs under the command line and environment of its
    systemd unit (:meth:`unit`). ``router``: whether a router runs too (no release before 0.2 has one).
    ``join``: the agents join with one-time tokens (`install-units --join`) and never hold the cluster key.
    """

    def __init__(self, dc, workdir, timings=TIMINGS, nodes=NODES, agent_data_dirs=None, agent_images_dirs=None,
                 release_env=None, release_argv=None, router=True, bus_encryption="required", join=False):
        self.dc = dc
        self.workdir = str(workdir)
        self.logs = os.path.join(self.workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.settings = os.path.join(self.workdir, "settings.yaml")
        with open(self.settings, "w") as f:
            yaml.safe_dump(dict(timings), f)
        self.timings = dict(timings)
        self.secret = os.path.join(self.workdir, "secret")
        new_key_file(self.secret)
        self.key = read_key(self.secret)
        self.token = api_token(self.key)
        self.images = os.path.join(self.workdir, "images")
        self.pg = NetnsPostgres(dc, self.workdir)
        self.pg.start()
        self.store = self.pg.dsn
        self.apps = set()
        self.daemons = {}
        self.release_env = release_env or os.environ
        self.bus_encryption = bus_encryption   # off: what 0.1.0 speaks (the upgrade scenario)
        self.unit_env = {}   # each daemon's unit environment, to start it again in another release's (an upgrade)
        self.unit_argv = {}  # and its command line as this release's unit has it
        self.release_argv = release_argv or (lambda argv: argv)
        for r in ("r1", "r2"):
            a = dc.hosts[r].address
            self._add(r, *self.unit("reconciler", r, api=f"{a}:{API_PORT}", bus=f"tcp://{a}:{BUS_PORT}",
                                    routes=f"tcp://{a}:{ROUTES_PORT}", store=self.store))
        # The router in a namespace of its own, on both reconcilers' route feeds.
        rt = dc.hosts["rt"].address
        if router:
            self._add("rt", [CORRAL, "router", "--listen", f"{rt}:{ROUTER_PORT}", "--health", f"{rt}:{ROUTER_PORT + 1}",
                             "--workers", "1", "--feed-timeout", "2", "--settings", self.settings,
                             "--access-log", os.path.join(self.logs, "rt-access.log")]
                      + ["--bus-encryption", bus_encryption]
                      + [a for r in ("r1", "r2") for a in ("--reconciler", f"tcp://{dc.hosts[r].address}:{ROUTES_PORT}")],
                      {units.ENV_ROUTER: self.router_credential()})
        # The builder runs on the operator's host (root namespace, on the bridge's address): it needs
        # the package index the machine reaches, which the private link does not route to.
        b = dc.operator
        self._add("b1", *self.unit("builder", "b1", listen=f"{b}:{BUILDER_PORT}", advertise=f"{b}:{BUILDER_PORT}",
                                   store=self.store, cache_dir=os.path.join(self.workdir, "builder"),
                                   images_dir=self.images))
        agent_data_dirs, agent_images_dirs = agent_data_dirs or {}, agent_images_dirs or {}
        tokens = self.join_tokens(nodes) if join else {}
        for n in nodes:
            # Each agent carries the label host=<its name>, so that a test can pin an app to one node.
            argv, env = self.unit("agent", n, data_dir=agent_data_dirs.get(n) or os.path.join(self.workdir, "nodes", n),
                                  images_dir=agent_images_dirs.get(n) or self.images, address=dc.hosts[n].address,
                                  labels=(f"host={n}",), join_token=tokens.get(n),
                                  reconcilers=tuple(f"tcp://{dc.hosts[r].address}:{BUS_PORT}" for r in ("r1", "r2")))
            self._add(n, argv, env)
        self.env = dict(os.environ, CORRAL_API=",".join(self.api_url(r) for r in ("r1", "r2")),
                        CORRAL_TOKEN=self.token, XDG_CONFIG_HOME=os.path.join(self.workdir, "config"))
        for d in self.daemons.values():
            d.start()
        try:
            wait_for(f"{len(nodes)} ready nodes", lambda: len(self.ready_nodes()) == len(nodes), timeout=60)
        except AssertionError:
            self.down(check=False)
            raise

    def join_tokens(self, nodes):
        """``{node: a one-time join token}``, made in the store as `corral node join-token` makes them."""
        from corral.store import open_store
        from corral.wire.credentials import new_join_token
        from corral.wire.curve import server_public
        store = open_store(self.store)
        try:
            tokens = {n: new_join_token(server_public(self.key, "required")) for n in nodes}
            for token in tokens.values():
                store.add_join_token(token.id, token.secret_sha256(), 600.0, "cluster test")
        finally:
            store.close()
        return {n: token.text() for n, token in tokens.items()}

    def router_credential(self):
        """The router's credential file, made from the fleet's key as an operator makes it (`corral router-credential`)."""
        path = os.path.join(self.workdir, "router.credential")
        if not os.path.exists(path):
            subprocess.run([CORRAL, "router-credential", "--output", path], check=True, capture_output=True,
                           env=dict(os.environ, **{units.ENV_SECRET: self.secret}), timeout=60)
        return path

    def unit(self, role, name, **options):
        """``(argv, environment)`` of a daemon as its systemd unit runs it (corral/units.py): the unit's
        ExecStart, and the test's environment with the unit's EnvironmentFile over it (the key's path is
        the fleet's)."""
        o = units.Options(role=role, exe=CORRAL, name=name, settings=self.settings,
                          bus_encryption=self.bus_encryption, **options)
        env = dict(line.split("=", 1) for line in units.env_file(o).splitlines() if line and line[0] != "#")
        if units.ENV_SECRET in env:
            env[units.ENV_SECRET] = self.secret
        return units.command(o), env

    def _add(self, name, argv, env):
        def inside(argv):
            return self.dc.argv(name, argv) if name in self.dc.hosts and name != "b1" else argv
        self.unit_env[name], self.unit_argv[name] = env, inside(argv)
        self.daemons[name] = Daemon(name, inside(self.release_argv(argv)), os.path.join(self.logs, f"{name}.log"),
                                    env=dict(self.release_env, **env))

    # --- talking to the cluster -------------------------------------------
    def api_url(self, reconciler):
        return f"http://{self.dc.hosts[reconciler].address}:{API_PORT}"

    def corral(self, *args, check=True, timeout=120, input=None):
        """Run the ``corral`` command from the operator's seat."""
        r = subprocess.run([sys.executable, "-m", "corral", *args], env=self.env, cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode:
            raise AssertionError(f"corral {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def get(self, path, reconciler=None, timeout=2, store_down_ok=False):
        """GET an API path as JSON from ``reconciler`` (or the first that answers).

        None when none answers: not running, connection refused or timed out (a cut or frozen host), or, with
        ``store_down_ok``, a 503 (its store is unreachable). Any other answer that is not 2xx (a 401, a 404, a 500)
        fails the test with what the API said."""
        for r in ([reconciler] if reconciler else ["r1", "r2"]):
            if not self.daemons[r].alive():
                continue
            try:
                resp = requests.get(self.api_url(r) + path, timeout=timeout,
                                    headers={"Authorization": f"Bearer {self.token}"})
            except requests.RequestException:
                continue
            if resp.ok:
                return resp.json()
            if resp.status_code == 503 and store_down_ok:
                continue
            raise AssertionError(f"GET {path} from {r} answered {resp.status_code}: {resp.text[:300]}")
        return None

    def nodes(self):
        return self.nodes_of()

    def ready_nodes(self):
        for name, d in self.daemons.items():
            if d.proc.poll() is not None and d.starts and name in ("r1", "r2", "b1"):
                raise AssertionError(f"{name} exited with {d.proc.returncode}:\n{d.tail()}")
        return [n for n, v in self.nodes().items() if v["state"] == "ready"]

    def instances(self, app, reconciler=None):
        return [i for i in (self.get("/v1/instances", reconciler) or []) if i["app"] == app]

    def heard_from_after(self, when, nodes=None, reconciler=None, timeout=60):
        """Wait until ``reconciler`` (by default the first that answers) lists a report from each of ``nodes`` (by
        default every agent) received after the wall-clock time ``when``; return the nodes' ``last_seen`` then.

        A sleep proves only that the test's time passed. This proves the cluster's did: the reconciler ran,
        and heard the agents, past that moment. ``last_seen`` has whole seconds, so this waits up to a
        heartbeat more than the moment needs."""
        nodes = nodes or [n for n in self.daemons if n.startswith("n")]

        def heard():
            seen = {name: _epoch(n["last_seen"]) for name, n in self.nodes_of(reconciler).items() if name in nodes}
            return seen if len(seen) == len(nodes) and all(t is not None and t > when for t in seen.values()) \
                else None
        return wait_for(f"{reconciler or 'a reconciler'} to hear from {', '.join(nodes)} after "
                        f"{time.strftime('%H:%M:%S', time.gmtime(when))}", heard, timeout=timeout, interval=0.2)

    def nodes_of(self, reconciler=None):
        return {n["name"]: n for n in (self.get("/v1/nodes", reconciler) or [])}

    def serving(self, app):
        """Instances of ``app`` that are running and ready."""
        return [i for i in self.instances(app) if i["state"] == "running" and i["ready"]]

    def through_router(self, host, path="/", timeout=2):
        """``(status, body)`` of a GET to the router in ``rt`` for ``host``, or None when it did not answer."""
        try:
            r = requests.get(f"http://{self.dc.hosts['rt'].address}:{ROUTER_PORT}{path}", headers={"Host": host},
                             timeout=timeout)
        except requests.RequestException:
            return None
        return r.status_code, r.text

    def router_health(self):
        """The router's health (JSON), or None when it does not answer."""
        try:
            return requests.get(f"http://{self.dc.hosts['rt'].address}:{ROUTER_PORT + 1}/", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None

    def leader(self):
        """The name of the reconciler that leads now, or None."""
        for r in ("r1", "r2"):
            if (self.get("/healthz", r, timeout=1) or {}).get("leader"):
                return r
        return None

    def deploy(self, name, instances=2, extra=None, wait=True):
        """Apply the test app as ``name`` with ``instances`` copies of ``web``; wait until all serve."""
        path = write_manifest(self.workdir, name, instances, extra)
        self.apps.add(name)
        self.corral("apply", "-f", path, timeout=60)
        if wait:
            wait_for(f"{instances} serving instances of {name}",
                     lambda: len(self.serving(name)) == instances or None, timeout=120)
        return path

    def died(self):
        """Names of daemons that ended without the test ending them."""
        return sorted(n for n, d in self.daemons.items() if d.proc is not None and d.proc.poll() is not None
                      and not getattr(d, "ended_on_purpose", False))

    def instance_processes(self):
        """``{pid: app}`` of live instance processes of this fleet: ``CORRAL_APP`` set and ``VIRTUAL_ENV`` (the
        image's) inside the fleet's folder, so that another cluster's instances on this machine are not counted."""
        found, inside = {}, os.path.join(self.workdir, "").encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            env = proc_environ(pid)
            if b"CORRAL_APP" in env and env.get(b"VIRTUAL_ENV", b"").startswith(inside) \
                    and proc_state(pid) not in (None, "Z"):
                found[int(pid)] = env[b"CORRAL_APP"].decode()
        return found

    def down(self, check=True):
        """Stop every daemon (agents stop their instances), the store, and anything left.

        What had to be killed is a failure: a daemon that did not stop within 20 s of SIGINT, an instance
        process still running once every agent had stopped. With ``check`` the sentences are raised as an
        AssertionError (after everything is cleaned up), else returned."""
        for h in self.dc.hosts:
            self.dc.heal(h)
        problems = []
        order = ["rt"] + [n for n in self.daemons if n.startswith("n")] + ["b1", "r1", "r2"]
        for name in [n for n in order if n in self.daemons]:
            d = self.daemons[name]
            if d.alive() and d.stop(timeout=20) is None:
                problems.append(f"{name} did not stop within 20 s of SIGINT and was SIGKILLed:\n{d.tail(10)}")
        left = self.instance_processes()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            problems.append("instance processes outlived their stopped agents and were SIGKILLed: "
                            + ", ".join(f"{pid} ({app})" for pid, app in sorted(left.items())))
        self.pg.destroy()
        if problems and check:
            raise AssertionError("the fleet did not stop cleanly: " + "\n".join(problems))
        return problems


def write_manifest(workdir, name, instances, extra=None):
    """The test app (stdlib only, so the builder needs no package index) as ``name``; returns its path."""
    src = os.path.join(workdir, "app-src")
    if not os.path.exists(src):
        shutil.copytree(APP_SOURCE, src, ignore=shutil.ignore_patterns("__pycache__"))
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": name},
           "spec": {"source": "./app-src", "env": {"GREETING": "hi"},
                    "processes": {"web": {"command": "python serve.py", "instances": instances, "port": True,
                                          "drainPeriod": "0s", "stopGracePeriod": "5s"}}}}
    for key, value in (extra or {}).items():
        doc["spec"][key] = value
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def _epoch(iso):
    """``2026-11-26T15:20:38Z`` (as the API writes times) as seconds since the epoch; None stays None."""
    if iso is None:
        return None
    return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def dump_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1, default=str)
