"""How fast the reconciler places and starts instances at scale, and how long a planner pass takes.

    .venv/bin/python bench/scale.py --nodes 100 --instances 1000 --store sqlite
    .venv/bin/python bench/scale.py --nodes 1000 --instances 10000 --store postgresql

A real reconciler daemon (``corral reconciler``) runs on the chosen store.
Simulated agents speak the real wire protocol (signed envelopes over ZeroMQ,
schema-checked): several worker processes, each with many agents as green
threads. An agent "starts" an assigned instance at once (running and ready)
and reports at once and on every heartbeat; so what is measured is the
control plane alone: from one apply of M instances (apps of ``--per-app``
instances each, images already built) until every instance is reported
running, as Nomad's C1M/C2M count placements and Kubernetes' pod start
latency leaves out the image pull.

Then the planner alone: one full pass over the converged cluster (N nodes, M
running instances: nothing to do, which is every resync) and one placing all
M from scratch, the median of a few runs. This is a benchmark, not a test:
it prints figures and asserts nothing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

AGENTS_PER_WORKER = 250


# -- the simulated agents (a worker process) -----------------------------------
def agent_worker(names, endpoint, secret_file, heartbeat):
    """Run the agents ``names`` until the parent ends; print ``RUNNING n`` when this worker's count changes."""
    from corral import green
    green.patch()
    import eventlet
    from corral.wire.bus import BusClient
    from corral.wire.keys import read_key

    key = read_key(secret_file)
    running = {}  # node -> [instance dicts]
    total = [0]
    said = [-1]

    def body(name):
        return {"node": {"name": name, "address": "127.0.0.1", "labels": {},
                         "capacity": {"cpu": 64, "memory": 256 << 30, "disk": 1 << 40}},
                "instances": running.get(name, []), "epoch_seen": epochs.get(name, 0)}

    epochs, buses = {}, {}

    def make(name):
        def on_message(_endpoint, msg):
            if msg.type != "assign" or msg.epoch < epochs.get(name, 0):
                return
            epochs[name] = msg.epoch
            now = time.time()
            before = len(running.get(name, []))
            running[name] = [{"id": i["id"], "app": i["app"], "process": i["process"], "state": "running",
                              "ready": True, "pid": 1, "port": 1, "address": "127.0.0.1",
                              "revision": i["revision"], "image": i["image"], "restarts": 0, "started_at": now}
                             for i in msg.body["instances"]]
            total[0] += len(running[name]) - before
            buses[name].send_all("report", body(name), 0)
            if total[0] != said[0]:
                said[0] = total[0]
                print(f"RUNNING {total[0]} {time.time():.6f}", flush=True)
        return on_message

    for name in names:
        buses[name] = BusClient([endpoint], key, name, make(name)).start()

    def heartbeats():
        while True:
            for name in names:
                buses[name].send_all("report", body(name), 0)
                eventlet.sleep(0)
            eventlet.sleep(heartbeat)

    eventlet.spawn(heartbeats)
    print("UP", flush=True)
    parent = os.getppid()
    while os.getppid() == parent:  # until the parent ends (a blocking stdin read would freeze the hub)
        eventlet.sleep(0.5)


# -- the planner alone ----------------------------------------------------------
def planner_pass(nodes, instances, per_app, runs=5):
    """``(converged_ms, from_scratch_ms)``: median wall time of one plan() over the cluster."""
    from corral.store.base import DesiredInstance
    from reconciler.model import READY, DesiredApp, DesiredProcess, NodeView, ObservedInstance
    from reconciler.planner import plan

    spec = {"command": ["python", "app.py"], "env": {}, "port": True, "restart": "always", "drainPeriod": 2.0,
            "stopGracePeriod": 30.0, "resources": {"cpu": 0.1, "memory": 64 << 20}, "health": None}
    image = "sha256:" + "a" * 64
    apps = [DesiredApp(name=f"app{a:05d}", deleting=False, revision="1", image=image, artifact={"layers": []},
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
def store_dsn(kind, workdir):
    if kind == "sqlite":
        return f"sqlite:///{workdir}/corral.db", None
    from tests.pg import postgres_dsn, with_search_path
    import psycopg2
    base = postgres_dsn()
    schema = "bench_" + uuid.uuid4().hex[:8]
    with psycopg2.connect(base) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    return with_search_path(base, schema), (base, schema)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise SystemExit(f"bench: timed out after {timeout:g}s waiting for {what}")


def whole_path(args):
    """Start a reconciler and the simulated agents, apply M instances, time until all run."""
    import requests
    from corral.auth import api_token
    from corral.store import open_store
    from corral.wire.keys import new_key_file, read_key
    from reconciler import specs

    workdir = tempfile.mkdtemp(prefix="corral-bench-")
    secret = os.path.join(workdir, "secret")
    new_key_file(secret)
    token = api_token(read_key(secret))
    dsn, pg = store_dsn(args.store, workdir)
    store = open_store(dsn)
    api_port, bus_port = free_port(), free_port()
    settings = os.path.join(workdir, "settings.yaml")
    with open(settings, "w") as f:
        f.write(f"heartbeat: {args.heartbeat}\nheartbeat_timeout: {10 * args.heartbeat}\nnode_grace: 60\n")
    log = open(os.path.join(workdir, "reconciler.log"), "w")
    reconciler = subprocess.Popen(
        [sys.executable, "-m", "corral", "reconciler", "--store", dsn, "--api", f"127.0.0.1:{api_port}",
         "--bus", f"tcp://127.0.0.1:{bus_port}", "--secret-file", secret, "--name", "r1", "--settings", settings],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {token}"}
    workers = []
    try:
        wait("the reconciler to lead", lambda: _get(api, "/healthz", headers).get("leader"), 30)
        names = [f"node-{n:05d}" for n in range(args.nodes)]
        for i in range(0, args.nodes, AGENTS_PER_WORKER):
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "--agents-worker", ",".join(names[i:i + AGENTS_PER_WORKER]),
                 "--endpoint", f"tcp://127.0.0.1:{bus_port}", "--secret-file", secret,
                 "--heartbeat", str(args.heartbeat)],
                cwd=ROOT, stdout=subprocess.PIPE, text=True))
        for w in workers:
            assert w.stdout.readline().strip() == "UP"
        print(f"bench: {len(workers)} agent workers up", file=sys.stderr)
        wait(f"{args.nodes} ready nodes",
             lambda: len([n for n in _get(api, "/v1/nodes", headers) if n["state"] == "ready"]) == args.nodes, 300)

        import hashlib
        digest = "sha256:" + hashlib.sha256(b"bench").hexdigest()
        store.put_source(digest, b"bench")
        docs = []
        for a in range(args.instances // args.per_app):
            spec = {"source": "./app", "processes": {"web": {"command": "python app.py", "instances": args.per_app,
                                                             "port": True}}}
            docs.append({"doc": {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": f"app{a:05d}"},
                                 "spec": spec}, "source_digest": digest})
        _prebuild(store, docs, specs)
        print(f"bench: {args.nodes} nodes ready, {len(docs)} apps built; applying", file=sys.stderr)

        import selectors
        sel = selectors.DefaultSelector()
        counts = {}
        for w in workers:
            sel.register(w.stdout, selectors.EVENT_READ, w)
        t0 = time.time()
        r = requests.post(f"{api}/v1/apply", json={"documents": docs}, headers=headers, timeout=600)
        if r.status_code != 200:
            raise SystemExit(f"bench: the apply was refused: {r.text}")
        applied = time.time()
        done_at = first_at = None
        while done_at is None:
            if time.time() - t0 > args.timeout:
                raise SystemExit(f"bench: {sum(counts.values())} of {args.instances} running after {args.timeout}s")
            for k, _ in sel.select(timeout=1.0):
                line = k.fileobj.readline().split()
                if line and line[0] == "RUNNING":
                    counts[k.data.pid] = int(line[1])
                    if first_at is None and int(line[1]) > 0:
                        first_at = float(line[2])
                    print(f"\rbench: {sum(counts.values())} running", end="", file=sys.stderr)
                    if sum(counts.values()) >= args.instances:
                        done_at = float(line[2])
        took = done_at - t0
        return {"apply_s": round(applied - t0, 3), "first_running_s": round(first_at - t0, 3),
                "all_running_s": round(took, 3),
                "placements_per_s": round(args.instances / took)}
    finally:
        for w in workers:
            w.terminate()
        reconciler.terminate()
        reconciler.wait(30)
        store.close()
        if pg:
            import psycopg2
            with psycopg2.connect(pg[0]) as conn, conn.cursor() as cur:
                cur.execute(f"DROP SCHEMA {pg[1]} CASCADE")


def _get(api, path, headers):
    import requests
    try:
        return requests.get(api + path, headers=headers, timeout=10).json()
    except (requests.RequestException, ValueError):
        return {} if path == "/healthz" else []


def _prebuild(store, docs, specs):
    """Every app's image, already built (the builder is not what is measured)."""
    from types import SimpleNamespace
    for d in docs:
        rec = SimpleNamespace(spec=d["doc"]["spec"], source_digest=d["source_digest"])
        key, inputs = specs.build_inputs(rec)
        if store.get_build(key) is None:
            store.enqueue_build(key, d["doc"]["metadata"]["name"], inputs)
            b = store.claim_build("bench", stale_after=600)
            store.finish_build(b.id, "bench", state="succeeded", image="sha256:" + "b" * 64,
                               artifact_url="http://127.0.0.1:1/x", artifact_sha256="0" * 64,
                               layers=[{"kind": kind, "id": "sha256:" + c * 64, "url": "http://127.0.0.1:1/x",
                                        "sha256": c * 64} for kind, c in (("env", "e"), ("code", "c"))])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--per-app", type=int, default=10, help="instances per app (default 10)")
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--planner-only", action="store_true")
    p.add_argument("--agents-worker", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--secret-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.agents_worker:
        return agent_worker(args.agents_worker.split(","), args.endpoint, args.secret_file, args.heartbeat)
    converged, scratch = planner_pass(args.nodes, args.instances, args.per_app)
    out = {"nodes": args.nodes, "instances": args.instances, "store": args.store,
           "planner_pass_converged_ms": round(converged, 1), "planner_pass_place_all_ms": round(scratch, 1)}
    if not args.planner_only:
        out.update(whole_path(args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
