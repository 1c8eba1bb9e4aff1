"""Benchmark: `corral router` beside nginx, on the same fast local backends, in one run.

Scenarios (each prints a table; nothing is asserted):

1. ``throughput``: ``wrk`` through one router worker (a static table, one route to
   one backend), through one nginx worker (``proxy_pass`` to an upstream with
   ``keepalive``), through the yardstick of issue 16 (bench/relay_yardstick.py: a
   minimal eventlet relay, no routing, no headers), and straight to the backend;
   req/s, p50 and p99 at 50 connections, the CPU each proxy's processes spent per
   request (user + system; it moves less with the machine's load than req/s),
   the router again with its access log on (as a deployment has it), and p50
   at 1 connection (the latency a proxy adds when idle). The backend is nginx
   itself (``return 200 "ok"``), the fastest thing here.
2. ``churn``: 3,000 backends behind 300 hosts (10 each), every backend replaced
   every 10 s while ``wrk`` rotates over the 300 hosts for ``--churn-seconds``.
   The router follows a real route feed (reconciler/route_feed.py on a
   BusPublisher, in a process of its own); nginx gets its config rewritten and
   ``nginx -s reload`` every 10 s. Backends are distinct addresses
   127.G.X.Y of one listening nginx (every 127/8 address is loopback), so that
   each replacement is 3,000 new backends. Errors, p99, and memory (RSS of the
   router's processes, of nginx's master and workers: at the start, the peak,
   the end).
3. ``kill``: ``wrk`` through the router to 3 backends (3 processes of
   tests/router_backend.py), one killed with SIGKILL after 3 s: failed requests.
   With a static table the dead backend stays in the table: what hides it is the
   retry of a refused connect on another backend. (In a cluster, the agent's next
   report takes it out: its ``state`` is no longer running.)

4. ``cluster-kill``: `corral up` (short timings) with the example app, wrk
   through its router, one instance's process SIGKILLed: failed requests, and
   how long until the route table the reconcilers publish no longer lists it
   (the agent sees the exit, reports, the reconcilers publish a delta).

    .venv/bin/python bench/router.py [--seconds 10] [--churn-seconds 60] [--only throughput|churn|kill|cluster-kill]

Needs ``wrk`` and ``nginx`` (Debian: ``apt-get install wrk nginx-light``).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PY = sys.executable
HOSTS, PER_HOST = 300, 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, host="127.0.0.1", timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def nginx(tmp, name, http_body, workers=1):
    """Start an nginx (its own prefix under ``tmp``) with ``http_body`` inside ``http {}``;
    returns ``(process, conf path)``."""
    prefix = os.path.join(tmp, name)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    write_nginx_conf(conf, prefix, http_body, workers)
    proc = subprocess.Popen(["nginx", "-p", prefix, "-c", conf, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, conf


def write_nginx_conf(conf, prefix, http_body, workers=1):
    with open(conf + ".new", "w") as f:
        f.write(f"worker_processes {workers};\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
                f"events {{ worker_connections 16384; }}\nworker_rlimit_nofile 65536;\n"
                f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n"
                f"  proxy_temp_path {prefix}/proxy;\n{http_body}\n}}\n")
    os.replace(conf + ".new", conf)


def router(tmp, args, workers=1):
    """Start `corral router` with ``args``; returns ``(process, port, health port)``."""
    port, health = free_port(), free_port()
    proc = subprocess.Popen([PY, "-m", "corral", "router", "--listen", f"127.0.0.1:{port}",
                             "--health", f"127.0.0.1:{health}", "--workers", str(workers), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "router.log"), "ab"),
                            env=dict(os.environ, CORRAL_ROUTER_CREDENTIAL=os.path.join(tmp, "router.credential")))
    wait_port(health)
    return proc, port, health


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tree_pids(pid):
    """``pid`` and its children's pids, or None when ``pid`` is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid] + [int(p) for p in f.read().split()]
    except OSError:
        return None


def tree_rss_mib(pid):
    """RSS of ``pid`` and its children, MiB."""
    total = 0
    pids = tree_pids(pid)
    if pids is None:
        return 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def tree_cpu_seconds(pid):
    """User + system CPU seconds spent so far by ``pid`` and its children (not counting
    children already reaped)."""
    pids = tree_pids(pid)
    if pids is None:
        return 0.0
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])   # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(url, seconds, connections=50, host=None, script=None, threads=1):
    """Run wrk; returns ``{rps, p50, p99 (ms), errors, requests}``."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if host:
        argv += ["-H", f"Host: {host}"]
    if script:
        argv += ["-s", script]
    out = subprocess.run(argv + [url], capture_output=True, text=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    rps = float((re.search(r"Requests/sec:\s+([\d.]+)", out) or [0, "nan"])[1])
    requests = int((re.search(r"(\d+) requests in", out) or [0, 0])[1])
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "errors": errors, "requests": requests}


def row(name, r):
    return (f"| {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")


def static_table(tmp, routes):
    path = os.path.join(tmp, "table.json")
    with open(path, "w") as f:
        json.dump({"routes": routes}, f)
    return path


def throughput(tmp, seconds):
    """Scenario 1 (see the module docstring)."""
    backend_port, nginx_port, relay_port = free_port(), free_port(), free_port()
    backend, _ = nginx(tmp, "backend", f'  server {{ listen 127.0.0.1:{backend_port}; '
                                       f'location / {{ return 200 "ok"; }} }}')
    proxy, _ = nginx(tmp, "proxy", f"  upstream b {{ server 127.0.0.1:{backend_port}; keepalive 64; }}\n"
                                   f"  server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://b; "
                                   f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }}')
    relay = subprocess.Popen([PY, os.path.join(ROOT, "bench", "relay_yardstick.py"), str(relay_port),
                              str(backend_port)])
    table = static_table(tmp, [{"host": "b.test", "path": "/", "app": "b", "process": "web",
                                "backends": [{"id": "b1", "address": "127.0.0.1", "port": backend_port}]}])
    rproc, rport, _ = router(tmp, ["--static", table])
    lproc, lport, _ = router(tmp, ["--static", table, "--access-log", os.path.join(tmp, "access.log")])
    paths = {"backend alone": (f"http://127.0.0.1:{backend_port}/", backend),
             "nginx (1 worker)": (f"http://127.0.0.1:{nginx_port}/", proxy),
             "eventlet relay (yardstick)": (f"http://127.0.0.1:{relay_port}/", relay),
             "corral router (1 worker)": (f"http://127.0.0.1:{rport}/", rproc),
             "corral router, access log on": (f"http://127.0.0.1:{lport}/", lproc)}
    router_url = paths["corral router (1 worker)"][0]
    try:
        for port in (backend_port, nginx_port, relay_port):
            wait_port(port)
        wrk(router_url, 2, host="b.test")   # warm up
        results, cpu = {}, {}
        for name, (url, proc) in paths.items():
            before = tree_cpu_seconds(proc.pid)
            results[name] = wrk(url, seconds, host="b.test")
            cpu[name] = (tree_cpu_seconds(proc.pid) - before) / max(1, results[name]["requests"]) * 1e6
        idle = {name: wrk(url, max(3, seconds // 2), connections=1, host="b.test")["p50"]
                for name, (url, _) in paths.items() if "access log" not in name}
        peak = results["corral router (1 worker)"]["rps"]
        half = half_rate(tmp, router_url, peak, seconds)
        direct = half_rate(tmp, paths["backend alone"][0], peak, seconds)
    finally:
        for p in (lproc, rproc, relay, proxy, backend):
            stop(p)
    print(f"\n## throughput: wrk -t1 -c50 -d{seconds}s, a 2-byte answer\n")
    print("| path | req/s | p50 ms | p99 ms | errors | CPU us/request | p50 ms at 1 connection |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(row(name, r) + f" {cpu[name]:.1f} | " + (f"{idle[name]:.3f} |" if name in idle else "- |"))
    nginx_rps = results["nginx (1 worker)"]["rps"]
    added = idle["corral router (1 worker)"] - idle["backend alone"]
    print(f"at about half the router's peak ({half['rps']:,.0f} req/s, paced): p50 {half['p50']:.3f} ms through "
          f"the router, {direct['p50']:.3f} ms straight to the backend: {half['p50'] - direct['p50']:.3f} ms added")
    print(f"\nper process, against nginx: router {peak / nginx_rps:.2f}x, yardstick relay "
          f"{results['eventlet relay (yardstick)']['rps'] / nginx_rps:.2f}x; latency the router adds at 1 "
          f"connection: {added:.3f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def half_rate(tmp, url, peak, seconds, connections=20):
    """wrk paced (each connection waits between requests, wrk's ``delay()``) to about half of
    ``peak`` req/s; wrk's latency leaves the pause out. Each pause is drawn at random (an
    exponential one: requests arrive as a Poisson stream, as many independent clients' do);
    the same pause for every connection keeps them in step, and each request then waits for
    the other 19 of its burst."""
    script = os.path.join(tmp, "paced.lua")
    pause_ms = max(1.0, connections * 1000 / (peak / 2))
    with open(script, "w") as f:
        f.write(f'wrk.headers["Host"] = "b.test"\nfunction delay()\n'
                f'  return math.floor(-math.log(1 - math.random()) * {pause_ms:.3f} + 0.5)\nend\n')
    return wrk(url, max(3, seconds // 2), connections=connections, script=script)


def churn_routes(generation, port):
    """The route JSON of one generation: 300 hosts, 10 backends each, all at new addresses."""
    g = 1 + generation % 200
    routes = []
    for h in range(HOSTS):
        backends = []
        for k in range(PER_HOST):
            i = h * PER_HOST + k
            backends.append({"id": f"g{generation}-{i}", "address": f"127.{g}.{i // 250}.{i % 250 + 1}", "port": port})
        routes.append({"host": f"h{h}.test", "path": "/", "app": f"a{h}", "process": "web", "backends": backends})
    return routes


def nginx_churn_body(generation, port, listen):
    ups = []
    for r in churn_routes(generation, port):
        servers = " ".join(f"server {b['address']}:{b['port']};" for b in r["backends"])
        ups.append(f"  upstream {r['app']} {{ {servers} keepalive 8; }}\n"
                   f"  server {{ listen 127.0.0.1:{listen}; server_name {r['host']}; location / {{ "
                   f'proxy_pass http://{r["app"]}; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}')
    return "\n".join(ups)


def publisher_main(endpoint, key_file, port, every):
    """``--publish``: a route feed of the churning table (green, in its own process)."""
    import corral.green
    corral.green.patch()
    import eventlet
    from corral.routetable import route_from_json
    from corral.wire.bus import BusPublisher
    from reconciler.route_feed import RouteFeed
    from corral.wire.routercred import feed_key
    with open(key_file) as f:
        key = feed_key(bytes.fromhex(f.read().strip()))   # what the routers check the feed with
    state = {"generation": 0}

    def compute():
        return {(r["host"], r["path"]): route_from_json(r) for r in churn_routes(state["generation"], port)}
    feed = RouteFeed(lambda t, b: pub.publish(t, b), compute, lambda: 1)
    pub = BusPublisher(endpoint, key, "bench", feed.on_subscribe).start()
    feed.start()
    while True:
        eventlet.sleep(every)
        state["generation"] += 1
        feed.kick()


class Sampler:
    """Samples RSS of a process tree every 0.5 s: start, peak, end (MiB)."""

    def __init__(self, pid):
        self.pid, self.samples, self.stopping = pid, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            self.samples.append(tree_rss_mib(self.pid))
            time.sleep(0.5)

    def done(self):
        self.stopping.set()
        self.thread.join()
        return self.samples[0], max(self.samples), self.samples[-1]


def churn(tmp, seconds, every=10.0):
    """Scenario 2 (see the module docstring)."""
    backend_port, nginx_port = free_port(), free_port()
    backend, _ = nginx(tmp, "churn-backend", f'  server {{ listen {backend_port} reuseport; '
                                             f'location / {{ return 200 "ok"; }} }}', workers=1)
    proxy, conf = nginx(tmp, "churn-proxy", nginx_churn_body(0, backend_port, nginx_port))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = subprocess.Popen([PY, os.path.abspath(__file__), "--publish", endpoint, "--key", os.path.join(tmp, "key"),
                            "--port", str(backend_port), "--every", str(every)], cwd=ROOT)
    rproc, rport, health = router(tmp, ["--reconciler", endpoint, "--bus-encryption", "off"])   # its publisher: cleartext
    script = os.path.join(tmp, "hosts.lua")
    with open(script, "w") as f:
        f.write(f'local i = 0\nrequest = function()\n  i = i + 1\n'
                f'  return wrk.format("GET", "/", {{["Host"] = "h" .. (i % {HOSTS}) .. ".test"}})\nend\n')
    stopping = threading.Event()

    def reloader():
        generation = 0
        while not stopping.wait(every):
            generation += 1
            write_nginx_conf(conf, os.path.join(tmp, "churn-proxy"), nginx_churn_body(generation, backend_port,
                                                                                      nginx_port))
            subprocess.run(["nginx", "-p", os.path.join(tmp, "churn-proxy"), "-c", conf, "-s", "reload"],
                           capture_output=True)
    try:
        wait_port(backend_port)
        wait_port(nginx_port)
        import urllib.request
        deadline = time.monotonic() + 30
        while json.load(urllib.request.urlopen(f"http://127.0.0.1:{health}/"))["routes"] < HOSTS:
            if time.monotonic() > deadline:
                raise RuntimeError("the router never got the churn table")
            time.sleep(0.2)
        steady = {"router": wrk(f"http://127.0.0.1:{rport}/", 10, script=script),
                  "nginx": wrk(f"http://127.0.0.1:{nginx_port}/", 10, script=script)}
        out = {}
        for name, proc, port in (("router", rproc, rport), ("nginx", proxy, nginx_port)):
            stopping.clear()
            helper = threading.Thread(target=reloader, daemon=True) if name == "nginx" else None
            if helper:
                helper.start()
            sampler = Sampler(proc.pid)
            out[name] = (wrk(f"http://127.0.0.1:{port}/", seconds, script=script), sampler.done())
            stopping.set()
            if helper:
                helper.join()
    finally:
        for p in (rproc, pub, proxy, backend):
            stop(p)
    print(f"\n## churn: {HOSTS} hosts x {PER_HOST} backends, all replaced every {every:g} s, "
          f"wrk -c50 -d{seconds}s over the hosts\n")
    print("| proxy | req/s | p50 ms | p99 ms | errors | steady p99 ms | p99 / steady | RSS MiB start/peak/end |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (r, (start, peak, end)) in out.items():
        print(row(f"{name} ({'feed deltas' if name == 'router' else 'reload'})", r)
              + f" {steady[name]['p99']:.2f} | {r['p99'] / steady[name]['p99']:.2f} |"
              + f" {start:.0f} / {peak:.0f} / {end:.0f} |")


def kill(tmp, seconds):
    """Scenario 3 (see the module docstring)."""
    ports = [free_port() for _ in range(3)]
    backends = [subprocess.Popen([PY, "-m", "tests.router_backend", str(p), f"b{i}"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL) for i, p in enumerate(ports)]
    table = static_table(tmp, [{"host": "k.test", "path": "/", "app": "k", "process": "web",
                                "backends": [{"id": f"b{i}", "address": "127.0.0.1", "port": p}
                                             for i, p in enumerate(ports)]}])
    rproc, rport, _ = router(tmp, ["--static", table])
    try:
        for p in ports:
            wait_port(p)
        timer = threading.Timer(3.0, lambda: os.kill(backends[0].pid, signal.SIGKILL))
        timer.start()
        r = wrk(f"http://127.0.0.1:{rport}/", seconds, connections=20, host="k.test")
        timer.join()
    finally:
        for p in [rproc] + backends:
            stop(p)
    print(f"\n## kill: 3 backends, one SIGKILLed after 3 s of wrk -c20 -d{seconds}s (GET)\n")
    print("| proxy | req/s | p50 ms | p99 ms | failed requests |\n| --- | --- | --- | --- | --- |")
    print(row("corral router (1 worker)", r))


def instance_pids(app):
    """``{instance id: pid}`` of the live processes whose environment says ``CORRAL_APP=app``."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
        except OSError:
            continue
        if env.get(b"CORRAL_APP") == app.encode():
            out.setdefault(env[b"CORRAL_INSTANCE"].decode(), int(pid))
    return out


def cluster_kill(tmp, seconds):
    """Scenario 4 (see the module docstring)."""
    import urllib.request
    from tests.support import free_base_port
    base = free_base_port()
    router_port = base + 20
    settings = os.path.join(tmp, "fast.yaml")
    with open(settings, "w") as f:
        f.write("heartbeat: 0.5\nheartbeat_timeout: 3\nnode_grace: 8\nlease_ttl: 3\nlease_renew: 0.5\n"
                "loop_interval: 0.5\nbuild_poll: 0.2\n")
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, "config"))
    up = subprocess.Popen([PY, "-m", "corral", "up", "--data-dir", os.path.join(tmp, "up"), "--base-port", str(base),
                           "--router-port", str(router_port), "--settings", settings, "--apply",
                           os.path.join(ROOT, "manifests", "examples", "hello.yaml")], cwd=ROOT, env=env,
                          stdout=open(os.path.join(tmp, "up.log"), "w"), stderr=subprocess.STDOUT,
                          start_new_session=True)

    def ready_backends():
        with open(os.path.join(tmp, "config", "corral", "config.yaml")) as f:
            token = json.load(f)["token"]
        req = urllib.request.Request(f"http://127.0.0.1:{base}/v1/routes", headers={"Authorization": f"Bearer {token}"})
        return {b["id"] for r in json.load(urllib.request.urlopen(req, timeout=2)) if r["app"] == "hello"
                for b in r["backends"]}
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if len(ready_backends()) == 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or up.poll() is not None:
                raise RuntimeError("corral up did not serve hello through its router; see " + tmp)
            time.sleep(0.5)
        victim, pid = sorted(instance_pids("hello").items())[0]
        out = {}

        def kill_and_time():
            time.sleep(3)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            while victim in ready_backends():
                time.sleep(0.02)
            out["gone"] = time.monotonic() - killed
        t = threading.Thread(target=kill_and_time)
        t.start()
        r = wrk(f"http://127.0.0.1:{router_port}/", seconds, connections=10, host="hello.localhost")
        t.join()
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(120)
    print(f"\n## cluster-kill: corral up, hello (2 instances), one SIGKILLed after 3 s of wrk -c10 -d{seconds}s\n")
    print("| proxy | req/s | p50 ms | p99 ms | failed requests | out of the routes after |\n| --- | --- | --- | --- | --- | --- |")
    print(row("corral router (1 worker)", r) + f" {out.get('gone', float('nan')):.2f} s |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--churn-seconds", type=int, default=60)
    ap.add_argument("--only", choices=["throughput", "churn", "kill", "cluster-kill"])
    ap.add_argument("--publish", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--every", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publish:
        return publisher_main(args.publish, args.key, args.port, args.every)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"bench/router.py needs {tool} (apt-get install wrk nginx-light)")
    tmp = tempfile.mkdtemp(prefix="corral-bench-router-")
    with open(os.open(os.path.join(tmp, "key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(os.urandom(32).hex())
    subprocess.run([PY, "-m", "corral", "router-credential", "--output", os.path.join(tmp, "router.credential")],
                   cwd=ROOT, check=True, env=dict(os.environ, CORRAL_SECRET_FILE=os.path.join(tmp, "key")))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        if args.only in (None, "throughput"):
            throughput(tmp, args.seconds)
        if args.only in (None, "kill"):
            kill(tmp, args.seconds)
        if args.only in (None, "churn"):
            churn(tmp, args.churn_seconds)
        if args.only in (None, "cluster-kill"):
            cluster_kill(tmp, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
