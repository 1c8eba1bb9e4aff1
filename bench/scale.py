"""How fast the reconciler places and starts instances at scale, and how long a planner pass takes.

    .venv/bin/python bench/scale.py --nodes 100 --instances 1000 --store sqlite
    .venv/bin/python bench/scale.py --nodes 1000 --instances 10000 --store postgresql
    .venv/bin/python bench/scale.py --nodes 1000 --instances 10000 --bus-encryption required

A real reconciler daemon (``corral reconciler``) runs on the chosen store.
Simulated agents speak the real wire protocol (signed envelopes over ZeroMQ,
schema-checked): ``--workers`` processes, each hosting its share of the N
agents as green threads around one shared ZeroMQ context (a context each, with
its I/O thread, was too heavy for 1,000 agents on 2 cores). An agent "starts"
an assigned instance at once (running and ready) and reports at once and on
every heartbeat, as the real agent does: the full report when it changed or
was not acked, an ``alive`` otherwise (nodeagent/reporting.py), or with
``--full-reports`` the full report every heartbeat (as agents before 0.2 did,
to compare); so what is measured is the control plane alone: from one
apply of M instances (apps of ``--per-app`` instances each, images already
built) until every instance is reported running (``all_running_s``: the last
agent's report sent) and until the app statuses in the store count them all
ready (``all_ready_in_status_s``: the reconciler heard and wrote it), as
Nomad's C1M/C2M count placements and Kubernetes' pod start latency leaves out
the image pull. ``registered_s``: from the agents' start until the API lists
all N nodes ready.

Then the planner alone: one full pass over the converged cluster (N nodes, M
running instances: nothing to do, which is every resync) and one placing all
M from scratch, the median of a few runs. This is a benchmark, not a test:
it prints figures and asserts nothing.
"""
import argparse
import resource
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# -- the simulated agents (a worker process) -----------------------------------
class Fleet:
    """Simulated agents sharing one process and one ZeroMQ context: each a real
    :class:`BusClient` (its own DEALER, signed envelopes, schema-checked both
    ways) that "starts" what it is assigned at once (running and ready) and
    reports at once and every heartbeat, as a real agent's report looks
    (``started_at``, ``seq``, a moving load)."""

    def __init__(self, names, endpoint, key, context, full_reports=False, encryption="off"):
        from corral.wire.bus import BusClient
        from corral.wire.curve import server_public
        from nodeagent.reporting import Reporting
        self.endpoint, self.full_reports = endpoint, full_reports
        self.reporting = {name: Reporting() for name in names}
        self.started_at = time.time()
        self.running = {name: [] for name in names}
        self.epochs = {name: 0 for name in names}
        self.seq = {name: 0 for name in names}
        self.total, self.changed_at = 0, None
        self.buses = {name: BusClient([endpoint], key, name, self._handler(name), context=context,
                                      curve_server_public=server_public(key, encryption)).start()
                      for name in names}

    def report(self, name):
        """Send ``name``'s report to the reconciler: full, or an ``alive`` as the real agent chooses."""
        from corral import nodereport
        self.seq[name] += 1
        body = {"node": {"name": name, "address": "127.0.0.1", "labels": {}, "conditions": [],
                         "capacity": {"cpu": 64, "memory": 256 << 30, "disk": 1 << 40},
                         "load": [round(random.uniform(0, 2), 2)] * 3, "version": "bench"},
                "instances": self.running[name], "epoch_seen": self.epochs[name],
                "started_at": self.started_at, "seq": self.seq[name]}
        if self.full_reports:
            self.buses[name].send_all("report", body, self.epochs[name])
            return
        body["alive"] = True
        kind, sent = self.reporting[name].messages(self.endpoint, body, nodereport.digest(body), time.monotonic())
        if not self.buses[name].send_to(self.endpoint, kind, sent, self.epochs[name]):
            self.reporting[name].unsent(self.endpoint)

    def _handler(self, name):
        def on_message(endpoint, msg):
            if msg.type == "ack":
                if self.reporting[name].on_ack(endpoint, msg.body, self.started_at):
                    self.report(name)
                return
            if msg.type != "assign" or msg.epoch < self.epochs[name]:
                return
            if msg.body["node"] != name:
                return  # as a real agent, ignore an assign for another node
            self.epochs[name] = msg.epoch
            held = {i["id"]: i for i in self.running[name]}
            if [i["id"] for i in msg.body["instances"]] == list(held):
                return  # nothing to start or stop: a real agent does not report for it either
            now = time.time()
            before = len(held)
            self.running[name] = [held.get(i["id"]) or {
                "id": i["id"], "app": i["app"], "process": i["process"], "state": "running", "ready": True,
                "pid": 1, "port": 1, "address": "127.0.0.1", "revision": i["revision"], "image": i["image"],
                "restarts": 0, "started_at": now} for i in msg.body["instances"]]
            self.report(name)
            self.total += len(self.running[name]) - before
            self.changed_at = time.time()
        return on_message


def agent_worker(names, endpoint, secret_file, heartbeat, full_reports=False, encryption="off"):
    """Run the simulated agents ``names`` until the parent ends; print ``RUNNING n t``
    (this worker's instance count, when it last changed) whenever it has changed."""
    from corral import green
    green.patch()
    import eventlet
    from corral.wire.bus import shared_context
    from corral.wire.keys import read_key

    # One DEALER (and its descriptors) per simulated agent: a worker of thousands of agents needs more
    # than a ZeroMQ context's 1,023 sockets and the usual 1,024 open files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * len(names) + 1024)), hard))
    fleet = Fleet(names, endpoint, read_key(secret_file), shared_context(max_sockets=len(names) + 64),
                  full_reports=full_reports, encryption=encryption)

    def heartbeats():  # every agent once per heartbeat, spread over it as real agents are
        due, step = time.monotonic(), heartbeat / len(names)
        while True:
            for name in names:
                fleet.report(name)
                due += step  # a schedule, not a pause: a worker short of CPU catches up instead of drifting
                eventlet.sleep(max(0.0, due - time.monotonic()))

    eventlet.spawn(heartbeats)
    print("UP", flush=True)
    parent, said = os.getppid(), None
    while os.getppid() == parent:  # until the parent ends (a blocking stdin read would freeze the hub)
        if fleet.changed_at != said:
            said = fleet.changed_at
            print(f"RUNNING {fleet.total} {said:.6f}", flush=True)
        eventlet.sleep(0.05)


# -- the planner alone ----------------------------------------------------------
def planner_pass(nodes, instances, per_app, runs=5):
    """``(converged_ms, from_scratch_ms)``: median wall time of one plan() over the cluster."""
    from corral.store.base import DesiredInstance
    from reconciler.model import READY, DesiredApp, DesiredProcess, NodeView, ObservedInstance
    from reconciler.planner import plan

    spec = {"command": ["python", "app.py"], "env": {}, "port": True, "restart": "always", "drainPeriod": 2.0,
            "stopGracePeriod": 30.0, "resources": {"cpu": 0.1, "memory": 64 << 20}, "health": None}
    image = "sha256:" + "a" * 64
    apps = [DesiredApp(name=f"app{a:05d}", deleting=False, revision="1", image=image,
                       processes=(DesiredProcess("web", per_app, spec, cpu=0.1, memory=64 << 20),))
            for a in range(instances // per_app)]
    ns = [NodeView(f"node-{n:05d}", READY, cpu=64.0, memory=256 << 30) for n in range(nodes)]
    counter = iter(range(10 ** 9))
    scratch = []
    for _ in range(runs):
        t = time.perf_counter()
        placed = plan(apps, [], [], ns, lambda a, p: f"{a}-{p}-{next(counter):x}", now=1.0)
        scratch.append(time.perf_counter() - t)
    rows = list(placed.boot)
    observed = [ObservedInstance(r.id, r.node, r.app, "running", True, 0.0) for r in rows]
    converged = []
    for _ in range(runs):
        t = time.perf_counter()
        result = plan(apps, rows, observed, ns, lambda a, p: "unused", now=100.0)
        converged.append(time.perf_counter() - t)
        assert result.empty
    assert len(rows) == instances and len(DesiredInstance.__dataclass_fields__) > 0
    return statistics.median(converged) * 1000, statistics.median(scratch) * 1000


# -- the whole path -----------------------------------------------------------------
def wait(what, predicate, timeout):
    """:func:`tests.support.wait_for` at a pace that spares the reconciler; a time-out ends the bench."""
    from tests.support import wait_for
    try:
        return wait_for(what, predicate, timeout, interval=0.2)
    except TimeoutError as e:
        raise SystemExit(f"bench: {e}") from None


def whole_path(args):
    """On the chosen store (a scratch PostgreSQL schema, dropped after), run :func:`measure`."""
    if args.store == "sqlite":
        return measure(args, None)
    from tests.pg import PostgresUnavailable, postgres_dsn
    from tests.support import scratch_schema
    try:
        base = postgres_dsn()
    except PostgresUnavailable as e:
        raise SystemExit(f"bench: no PostgreSQL to measure on: {e}") from None
    with scratch_schema(base, prefix="bench") as dsn:
        return measure(args, dsn)


def measure(args, dsn):
    """Start a reconciler and the simulated agents, apply M instances, time until all run."""
    import requests
    from corral.auth import api_token
    from corral.store import open_store
    from corral.wire.keys import new_key_file, read_key
    from tests.support import free_port, mark_built

    workdir = tempfile.mkdtemp(prefix="corral-bench-")
    secret = os.path.join(workdir, "secret")
    new_key_file(secret)
    token = api_token(read_key(secret))
    dsn = dsn or f"sqlite:///{workdir}/corral.db"
    store = open_store(dsn)
    api_port, bus_port = free_port(), free_port()
    settings = os.path.join(workdir, "settings.yaml")
    with open(settings, "w") as f:
        f.write(f"heartbeat: {args.heartbeat}\nheartbeat_timeout: {10 * args.heartbeat}\nnode_grace: 60\n")
    log = open(os.path.join(workdir, "reconciler.log"), "w")
    profile = ["-m", "cProfile", "-o", os.path.abspath(args.profile)] if args.profile else []
    reconciler = subprocess.Popen(
        [sys.executable, *profile, "-m", "corral", "reconciler", "--store", dsn, "--api", f"127.0.0.1:{api_port}",
         "--bus", f"tcp://127.0.0.1:{bus_port}", "--secret-file", secret, "--name", "r1", "--settings", settings,
         "--bus-encryption", args.bus_encryption],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {token}"}
    workers = []
    try:
        wait("the reconciler to lead", lambda: _get(api, "/healthz", headers).get("leader"), 30)
        names = [f"node-{n:05d}" for n in range(args.nodes)]
        share = -(-args.nodes // args.workers)
        for i in range(0, args.nodes, share):
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "--agents-worker", ",".join(names[i:i + share]),
                 "--endpoint", f"tcp://127.0.0.1:{bus_port}", "--secret-file", secret,
                 "--heartbeat", str(args.heartbeat), "--bus-encryption", args.bus_encryption,
                 *(["--full-reports"] if args.full_reports else [])],
                cwd=ROOT, stdout=subprocess.PIPE, text=True))
        for w in workers:
            if w.stdout.readline().strip() != "UP":
                raise SystemExit(f"bench: agent worker {w.pid} did not start (exit {w.poll()})")
        t_up = time.time()
        print(f"bench: {len(workers)} agent workers up", file=sys.stderr)
        wait(f"{args.nodes} ready nodes",
             lambda: len([n for n in _get(api, "/v1/nodes", headers) if n["state"] == "ready"]) == args.nodes, 300)
        registered = time.time() - t_up

        import hashlib
        digest = "sha256:" + hashlib.sha256(b"bench").hexdigest()
        store.put_source(digest, b"bench")
        docs = []
        for a in range(args.instances // args.per_app):
            spec = {"source": "./app", "processes": {"web": {"command": "python app.py", "instances": args.per_app,
                                                             "port": True}}}
            docs.append({"doc": {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": f"app{a:05d}"},
                                 "spec": spec}, "source_digest": digest})
        for d in docs:  # every image already built: the builder is not what is measured
            mark_built(store, d["doc"]["metadata"]["name"], d["doc"]["spec"], digest, "sha256:" + "b" * 64, "bench")
        print(f"bench: {args.nodes} nodes ready in {registered:.1f}s, {len(docs)} apps built; applying",
              file=sys.stderr)

        import selectors
        sel = selectors.DefaultSelector()
        counts, last = {}, {}
        for w in workers:
            sel.register(w.stdout, selectors.EVENT_READ, w)
        t0 = time.time()
        r = requests.post(f"{api}/v1/apply", json={"documents": docs}, headers=headers, timeout=600)
        if r.status_code != 200:
            raise SystemExit(f"bench: the apply was refused: {r.text}")
        applied = time.time()
        agents_done = status_done = None
        while status_done is None:
            if time.time() - t0 > args.timeout:
                raise SystemExit(f"bench: {sum(counts.values())} of {args.instances} running after {args.timeout}s")
            for k, _ in sel.select(timeout=0.25):
                line = k.fileobj.readline().split()
                if line and line[0] == "RUNNING":
                    counts[k.data.pid], last[k.data.pid] = int(line[1]), float(line[2])
            if agents_done is None and sum(counts.values()) >= args.instances:
                agents_done = max(last.values())
                print(f"bench: agents run all {args.instances}", file=sys.stderr)
            if agents_done is not None and sum(a.status.get("ready", 0) for a in store.list_apps()) >= args.instances:
                status_done = time.time()
        took = agents_done - t0
        return {"registered_s": round(registered, 3), "apply_s": round(applied - t0, 3),
                "all_running_s": round(took, 3), "all_ready_in_status_s": round(status_done - t0, 3),
                "placements_per_s": round(args.instances / took)}
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        reconciler.terminate()
        reconciler.wait(60)
        store.close()
        if args.keep:
            print(f"bench: reconciler log in {workdir}/reconciler.log", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _get(api, path, headers):
    import requests
    try:
        return requests.get(api + path, headers=headers, timeout=10).json()
    except (requests.RequestException, ValueError):
        return {} if path == "/healthz" else []


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--per-app", type=int, default=10, help="instances per app (default 10)")
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--workers", type=int, default=2, help="processes hosting the simulated agents (default 2)")
    p.add_argument("--full-reports", action="store_true",
                   help="agents send the full report every heartbeat (as before 0.2), never an alive")
    p.add_argument("--planner-only", action="store_true")
    p.add_argument("--profile", metavar="FILE", help="run the reconciler under cProfile, its stats to FILE")
    p.add_argument("--keep", action="store_true", help="keep the work folder (reconciler log)")
    p.add_argument("--bus-encryption", choices=["off", "required"], default="off",
                   help="CurveZMQ on the bus, as corral up and the units run it (default off)")
    p.add_argument("--agents-worker", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--secret-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    for name in ("nodes", "instances", "per_app", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if args.instances % args.per_app:
        p.error(f"--instances {args.instances} is not a multiple of --per-app {args.per_app}")
    if args.agents_worker:
        return agent_worker(args.agents_worker.split(","), args.endpoint, args.secret_file, args.heartbeat,
                            args.full_reports, args.bus_encryption)
    converged, scratch = planner_pass(args.nodes, args.instances, args.per_app)
    out = {"nodes": args.nodes, "instances": args.instances, "store": args.store,
           "planner_pass_converged_ms": round(converged, 1), "planner_pass_place_all_ms": round(scratch, 1)}
    if not args.planner_only:
        out.update(whole_path(args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
