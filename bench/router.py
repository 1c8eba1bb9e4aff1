"""Benchmark: `corral router` beside nginx and HAProxy, on the same fast local backends, in one run.

Scenarios (each prints a table; nothing is asserted):

1. ``throughput``: ``wrk`` through one router worker (a static table, one route to
   one backend), through one nginx worker (``proxy_pass`` to an upstream with
   ``keepalive``), through HAProxy with one thread (``http-reuse always``),
   through the yardstick of issue 16 (bench/relay_yardstick.py: a minimal
   eventlet relay, no routing, no headers), and straight to the backend; req/s,
   p50 and p99 at 50 connections, the CPU each proxy's processes spent per
   request (user + system; it moves less with the machine's load than req/s),
   the router again with its access log on (as a deployment has it), and p50
   at 1 connection (the latency a proxy adds when idle). The backend is nginx
   itself (``return 200 "ok"``), the fastest thing here. Two cores carry wrk,
   the backend and the proxy, and one 10 s run moves by 10-30 %: every path runs
   once a round (``--rounds``, the order rotated each round), the table gives
   each figure's median over the rounds, and a second table the router's req/s
   over nginx's and over HAProxy's in each round (the same moment of the
   machine) and their median. The paced run at half the router's (median)
   peak and the p50s at 1 connection run once, after the rounds.
2. ``churn``: 3,000 backends behind 300 hosts (10 each), every backend replaced
   every 10 s while ``wrk`` rotates over the 300 hosts for ``--churn-seconds``.
   One row a proxy: "router (feed deltas)" follows a real route feed
   (reconciler/route_feed.py on a BusPublisher, in a process of its own);
   "nginx (reload)" gets its config rewritten and ``nginx -s reload`` every
   10 s; "haproxy (reload)" (one thread, master-worker mode) gets its config
   rewritten and a seamless reload (SIGUSR2 to its master: the new worker takes
   the listening sockets over from the old one, which finishes its requests);
   "haproxy (runtime API)" keeps its config and process and has the 3,000
   server addresses changed on its stats socket (``set server ... addr``).
   Backends are distinct addresses 127.G.X.Y of one listening nginx (every 127/8
   address is loopback), so that each replacement is 3,000 new backends. Errors,
   p99 (and over the p99 of a run without churn), and memory (RSS of each
   proxy's process tree: the router's processes, nginx's or HAProxy's master
   and workers, old workers still finishing included: at the start, the peak,
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

    .venv/bin/python bench/router.py [--seconds 10] [--rounds 3] [--churn-seconds 60]
        [--only throughput|churn|kill|cluster-kill]

Needs ``wrk`` and ``nginx`` (Debian: ``apt-get install wrk nginx-light``); HAProxy's
rows need ``haproxy`` (2.6 or later: ``apt-get install haproxy``) and are left out
without it.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
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


def haproxy(tmp, name, body):
    """Start an HAProxy in master-worker mode (``-W``, in the foreground: the process returned
    is the master, its workers are its children; ``-S``: a master CLI on ``master.sock``) in
    its own directory under ``tmp``, with ``body`` after the global and defaults sections of
    ``write_haproxy_conf``; returns ``(process, conf path)``. SIGUSR2 to the process reloads it;
    its log is ``haproxy.log`` there. ``(None, None)`` when haproxy is not installed."""
    if not shutil.which("haproxy"):
        return None, None
    directory = os.path.join(tmp, name)
    os.makedirs(directory, exist_ok=True)
    conf = os.path.join(directory, "haproxy.cfg")
    write_haproxy_conf(conf, directory, body)
    proc = subprocess.Popen(["haproxy", "-W", "-S", os.path.join(directory, "master.sock"), "-f", conf],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "haproxy.log"), "ab"))
    return proc, conf


def write_haproxy_conf(conf, directory, body):
    """One worker with one thread (as one nginx worker, one router worker); keep-alive to the
    clients (HAProxy's default in HTTP mode) and to the servers (``http-reuse always``: an idle
    server connection serves any client's next request, as nginx's upstream ``keepalive``).
    What makes a reload seamless: in master-worker mode the master re-executes itself and hands
    the new worker the listening sockets of the old one (HAProxy 2.6 passes them on the
    socketpair between master and worker, as ``-x`` would from a stats socket with ``expose-fd
    listeners``, which is declared here as well, for older versions and for the runtime API); so
    no connect is refused. The old worker unbinds and finishes its connections;
    ``idle-close-on-response`` makes it answer the next request of an idle client connection
    with ``Connection: close`` instead of closing it under a request the client may be sending
    (HAProxy's own advice against errors during reloads), and ``hard-stop-after`` bounds how long
    an old worker may linger."""
    with open(conf + ".new", "w") as f:
        f.write(f"global\n  nbthread 1\n  maxconn 8000\n  pidfile {directory}/haproxy.pid\n"
                f"  stats socket {directory}/stats.sock mode 600 level admin expose-fd listeners\n"
                f"  hard-stop-after 30s\n"
                f"defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
                f"  http-reuse always\n  option idle-close-on-response\n{body}\n")
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


def throughput(tmp, seconds, rounds=3):
    """Scenario 1 (see the module docstring)."""
    backend_port, nginx_port, hap_port, relay_port = free_port(), free_port(), free_port(), free_port()
    backend, _ = nginx(tmp, "backend", f'  server {{ listen 127.0.0.1:{backend_port}; '
                                       f'location / {{ return 200 "ok"; }} }}')
    proxy, _ = nginx(tmp, "proxy", f"  upstream b {{ server 127.0.0.1:{backend_port}; keepalive 64; }}\n"
                                   f"  server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://b; "
                                   f'proxy_http_version 1.1; proxy_set_header Connection ""; }} }}')
    hap, _ = haproxy(tmp, "haproxy", f"frontend f\n  bind 127.0.0.1:{hap_port}\n  default_backend b\n"
                                     f"backend b\n  server b1 127.0.0.1:{backend_port}")
    relay = subprocess.Popen([PY, os.path.join(ROOT, "bench", "relay_yardstick.py"), str(relay_port),
                              str(backend_port)])
    table = static_table(tmp, [{"host": "b.test", "path": "/", "app": "b", "process": "web",
                                "backends": [{"id": "b1", "address": "127.0.0.1", "port": backend_port}]}])
    rproc, rport, _ = router(tmp, ["--static", table])
    lproc, lport, _ = router(tmp, ["--static", table, "--access-log", os.path.join(tmp, "access.log")])
    paths = {"backend alone": (f"http://127.0.0.1:{backend_port}/", backend),
             "nginx (1 worker)": (f"http://127.0.0.1:{nginx_port}/", proxy),
             "haproxy (1 thread)": (f"http://127.0.0.1:{hap_port}/", hap),
             "eventlet relay (yardstick)": (f"http://127.0.0.1:{relay_port}/", relay),
             "corral router (1 worker)": (f"http://127.0.0.1:{rport}/", rproc),
             "corral router, access log on": (f"http://127.0.0.1:{lport}/", lproc)}
    if not hap:
        del paths["haproxy (1 thread)"]
        print("haproxy is not installed (apt-get install haproxy): the throughput leaves its row out.")
    router_url = paths["corral router (1 worker)"][0]
    try:
        for port in (backend_port, nginx_port, relay_port) + ((hap_port,) if hap else ()):
            wait_port(port)
        wrk(router_url, 2, host="b.test")   # warm up
        runs = in_rounds(paths, seconds, rounds)
        results = {name: median_result(r) for name, r in runs.items()}
        idle = {name: wrk(url, max(3, seconds // 2), connections=1, host="b.test")["p50"]
                for name, (url, _) in paths.items() if "access log" not in name}
        peak = results["corral router (1 worker)"]["rps"]
        half = half_rate(tmp, router_url, peak, seconds)
        direct = half_rate(tmp, paths["backend alone"][0], peak, seconds)
    finally:
        for p in (lproc, rproc, relay, hap, proxy, backend):
            if p:
                stop(p)
    print(f"\n## throughput: wrk -t1 -c50 -d{seconds}s, a 2-byte answer; the median of {rounds} rounds "
          f"(errors: all rounds')\n")
    print("| path | req/s | p50 ms | p99 ms | errors | CPU us/request | p50 ms at 1 connection |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(row(name, r) + f" {r['cpu']:.1f} | " + (f"{idle[name]:.3f} |" if name in idle else "- |"))
    median_ratios = print_rounds(runs, results)
    added = idle["corral router (1 worker)"] - idle["backend alone"]
    relay_ratio = statistics.median(round_ratios(runs, "eventlet relay (yardstick)", "nginx (1 worker)"))
    print(f"\nat about half the router's peak ({half['rps']:,.0f} req/s, paced): p50 {half['p50']:.3f} ms through "
          f"the router, {direct['p50']:.3f} ms straight to the backend: {half['p50'] - direct['p50']:.3f} ms added")
    print("\nper process (the median of the rounds' ratios): router "
          + ", ".join(f"{ratio:.2f}x {proxy}" for proxy, ratio in median_ratios.items())
          + f"; yardstick relay {relay_ratio:.2f}x nginx; latency the router adds at 1 connection: {added:.3f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def print_rounds(runs, results):
    """The table of each round: req/s of the router, nginx and HAProxy, and the router's over each
    of the two; then the medians. Returns ``{"nginx": median ratio, "haproxy": ...}``."""
    short = {name: name.split()[-3] for name in ("corral router (1 worker)", "nginx (1 worker)", "haproxy (1 thread)")
             if name in runs}   # router, nginx, haproxy
    against = list(short)[1:]
    ratios = {name: round_ratios(runs, "corral router (1 worker)", name) for name in against}
    print("\n| round | " + " | ".join(f"{s} req/s" for s in short.values()) + " | "
          + " | ".join(f"router / {short[n]}" for n in against) + " |")
    print("| --- " * (1 + len(short) + len(against)) + "|")
    for i in range(len(runs["corral router (1 worker)"])):
        print(f"| {i + 1} | " + " | ".join(f"{runs[n][i]['rps']:,.0f}" for n in short) + " | "
              + " | ".join(f"{ratios[n][i]:.2f}" for n in against) + " |")
    medians = {short[n]: statistics.median(ratios[n]) for n in against}
    print("| median | " + " | ".join(f"{results[n]['rps']:,.0f}" for n in short) + " | "
          + " | ".join(f"{ratio:.2f}" for ratio in medians.values()) + " |")
    return medians


def measured(url, proc, seconds):
    """wrk through one path at 50 connections, and the CPU (us) its processes spent a request."""
    before = tree_cpu_seconds(proc.pid)
    r = wrk(url, seconds, host="b.test")
    r["cpu"] = (tree_cpu_seconds(proc.pid) - before) / max(1, r["requests"]) * 1e6
    return r


def in_rounds(paths, seconds, rounds):
    """Every path measured once a round, the order rotated by one each round (the load of the
    machine drifts: no path always goes first, or always after the same one); returns
    ``{path: [its result in each round]}``."""
    names = list(paths)
    runs = {name: [] for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(measured(*paths[name], seconds))
    return runs


def median_result(runs):
    """Each figure's median over the rounds, but errors: their sum (one error is worth seeing)."""
    return {k: sum(r[k] for r in runs) if k == "errors" else statistics.median(r[k] for r in runs) for k in runs[0]}


def round_ratios(runs, path, other):
    """``path``'s req/s over ``other``'s, in each round (the two measured at about the same
    moment of the machine)."""
    return [a["rps"] / b["rps"] for a, b in zip(runs[path], runs[other])]


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


def haproxy_churn_body(generation, port, listen, hosts_map):
    """HAProxy's side of ``nginx_churn_body``: one frontend that picks the backend of the Host
    header in ``hosts_map`` (a map: a tree lookup, as nginx's hash of server names, not 300 ACLs
    tried in turn; ``write_hosts_map`` writes it), one backend a host with its 10 servers
    (round robin, as nginx's upstream). The servers are named ``s0``..``s9`` in every
    generation, so that the runtime API can change their addresses."""
    backends = []
    for r in churn_routes(generation, port):
        servers = "".join(f"\n  server s{k} {b['address']}:{b['port']}" for k, b in enumerate(r["backends"]))
        backends.append(f"backend {r['app']}{servers}")
    return (f"frontend churn\n  bind 127.0.0.1:{listen}\n"
            f"  use_backend %[req.hdr(host),lower,map({hosts_map})]\n" + "\n".join(backends))


def write_hosts_map(path):
    """The map from each churn host to its HAProxy backend (the same in every generation)."""
    with open(path, "w") as f:
        f.writelines(f"{r['host']} {r['app']}\n" for r in churn_routes(0, 0))


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
    """Samples RSS of a process tree every 0.1 s: start, peak, end (MiB). (An old HAProxy worker
    lives 0.1-0.3 s beside the new one after a reload: every 0.5 s missed most of those peaks.)"""

    def __init__(self, pid):
        self.pid, self.samples, self.stopping = pid, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            self.samples.append(tree_rss_mib(self.pid))
            time.sleep(0.1)

    def done(self):
        self.stopping.set()
        self.thread.join()
        return self.samples[0], max(self.samples), self.samples[-1]


def churn(tmp, seconds, every=10.0):
    """Scenario 2 (see the module docstring)."""
    backend_port, nginx_port, hap_port, api_port = free_port(), free_port(), free_port(), free_port()
    backend, _ = nginx(tmp, "churn-backend", f'  server {{ listen {backend_port} reuseport; '
                                             f'location / {{ return 200 "ok"; }} }}', workers=1)
    proxy, conf = nginx(tmp, "churn-proxy", nginx_churn_body(0, backend_port, nginx_port))
    hosts_map = os.path.join(tmp, "hosts.map")
    write_hosts_map(hosts_map)
    hap, hap_conf = haproxy(tmp, "churn-haproxy", haproxy_churn_body(0, backend_port, hap_port, hosts_map))
    api, _ = haproxy(tmp, "churn-haproxy-api", haproxy_churn_body(0, backend_port, api_port, hosts_map))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = subprocess.Popen([PY, os.path.abspath(__file__), "--publish", endpoint, "--key", os.path.join(tmp, "key"),
                            "--port", str(backend_port), "--every", str(every)], cwd=ROOT)
    rproc, rport, health = router(tmp, ["--reconciler", endpoint, "--bus-encryption", "off"])   # its publisher: cleartext
    script = os.path.join(tmp, "hosts.lua")
    with open(script, "w") as f:
        f.write(f'local i = 0\nrequest = function()\n  i = i + 1\n'
                f'  return wrk.format("GET", "/", {{["Host"] = "h" .. (i % {HOSTS}) .. ".test"}})\nend\n')
    # row: (process, port, the change made every `every` s; None: the router's feed makes its own)
    proxies = {"router (feed deltas)": (rproc, rport, None),
               "nginx (reload)": (proxy, nginx_port, nginx_reload(conf, backend_port, nginx_port))}
    if hap:
        proxies["haproxy (reload)"] = (hap, hap_port, haproxy_reload(hap, hap_conf, backend_port, hap_port, hosts_map))
        proxies["haproxy (runtime API)"] = (api, api_port, haproxy_runtime_change(
            os.path.join(tmp, "churn-haproxy-api", "stats.sock"), backend_port))
    else:
        print("haproxy is not installed (apt-get install haproxy): the churn leaves its rows out.")
    try:
        wait_port(backend_port)
        for _, port, _ in proxies.values():
            wait_port(port)
        import urllib.request
        deadline = time.monotonic() + 30
        while json.load(urllib.request.urlopen(f"http://127.0.0.1:{health}/"))["routes"] < HOSTS:
            if time.monotonic() > deadline:
                raise RuntimeError("the router never got the churn table")
            time.sleep(0.2)
        steady = {name: wrk(f"http://127.0.0.1:{port}/", 10, script=script) for name, (_, port, _) in proxies.items()}
        out = {name: churning(proc.pid, port, change, seconds, every, script)
               for name, (proc, port, change) in proxies.items()}
    finally:
        for p in (rproc, pub, api, hap, proxy, backend):
            if p:
                stop(p)
    print(f"\n## churn: {HOSTS} hosts x {PER_HOST} backends, all replaced every {every:g} s, "
          f"wrk -c50 -d{seconds}s over the hosts\n")
    print("| proxy | req/s | p50 ms | p99 ms | errors | steady p99 ms | p99 / steady | RSS MiB start/peak/end |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (r, (start, peak, end)) in out.items():
        print(row(name, r) + f" {steady[name]['p99']:.2f} | {r['p99'] / steady[name]['p99']:.2f} |"
              + f" {start:.0f} / {peak:.0f} / {end:.0f} |")


def churning(pid, port, change, seconds, every, script):
    """wrk over the churn's hosts through ``port`` for ``seconds`` while ``change(generation)``
    runs every ``every`` s (generations 1, 2, ...; nothing when ``change`` is None), and the RSS
    of ``pid``'s process tree meanwhile; returns ``(wrk's result, (start, peak, end) MiB)``."""
    stopping = threading.Event()

    def changer():
        generation = 0
        while not stopping.wait(every):
            generation += 1
            change(generation)
    helper = threading.Thread(target=changer, daemon=True) if change else None
    if helper:
        helper.start()
    sampler = Sampler(pid)
    r = wrk(f"http://127.0.0.1:{port}/", seconds, script=script)
    rss = sampler.done()
    stopping.set()
    if helper:
        helper.join()
    return r, rss


def nginx_reload(conf, backend_port, listen):
    """The churn's change for nginx: its config rewritten for the generation, ``nginx -s reload``."""
    prefix = os.path.dirname(conf)

    def change(generation):
        write_nginx_conf(conf, prefix, nginx_churn_body(generation, backend_port, listen))
        subprocess.run(["nginx", "-p", prefix, "-c", conf, "-s", "reload"], capture_output=True)
    return change


def haproxy_reload(proc, conf, backend_port, listen, hosts_map):
    """The churn's change for HAProxy: its config rewritten for the generation, SIGUSR2 to its
    master (a seamless reload: see ``write_haproxy_conf``)."""
    def change(generation):
        write_haproxy_conf(conf, os.path.dirname(conf), haproxy_churn_body(generation, backend_port, listen, hosts_map))
        proc.send_signal(signal.SIGUSR2)
    return change


def haproxy_runtime_change(stats_socket, backend_port):
    """The churn's change through HAProxy's runtime API: server ``s<k>`` of each backend set to
    the generation's address on the stats socket, no reload (the config on disk stays the first
    generation's)."""
    def change(generation):
        answers = haproxy_cli(stats_socket, [f"set server {r['app']}/s{k} addr {b['address']} port {b['port']}"
                                             for r in churn_routes(generation, backend_port)
                                             for k, b in enumerate(r["backends"])])
        refused = [a for a in answers.splitlines() if a.strip() and not a.startswith("IP changed")]
        if refused:
            raise RuntimeError(f"HAProxy refused {len(refused)} address changes: {refused[0]}")
    return change


def haproxy_cli(stats_socket, commands, batch=100):
    """Send ``commands`` to an HAProxy stats socket, ``batch`` of them on a connection (one line,
    separated by ``;``: a line must fit in HAProxy's 16 kB buffer); returns its answers."""
    answers = []
    for i in range(0, len(commands), batch):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(stats_socket)
            s.sendall(("; ".join(commands[i:i + batch]) + "\n").encode())
            while chunk := s.recv(65536):
                answers.append(chunk)
    return b"".join(answers).decode()


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
    ap.add_argument("--rounds", type=int, default=3, help="throughput: rounds over every path (medians)")
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
            throughput(tmp, args.seconds, args.rounds)
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
