"""How fast `corral logs -f` streams, and how little the agent holds for a slow reader.

Starts a one-node `corral up` cluster (SQLite), deploys an app that writes
``--mb`` MB of log lines (100 bytes each) and a last ``done-marker`` line,
then measures:

1. throughput: `corral logs APP -f` from the start of the log until the marker
   is printed (agent reads the rotated files, the bus, the reconciler's HTTP
   stream, the command's parsing and printing to a pipe), and the same for
   `corral logs APP --tail 1000000`: MB/s, with the machine's load, and the CPU
   seconds the agent, each reconciler and the command spent (which the load
   of a shared machine does not change);
2. the agent's resident memory while a deliberately slow client follows the
   same log (reads 4 KiB every 10 ms over raw HTTP for ``--slow-seconds``):
   baseline before, peak (VmHWM) after, and how much the reader got. With the
   credit window the agent holds one chunk per stream, so the peak stays near
   the baseline whatever the log's size.

Run: ``.venv/bin/python bench/logs.py [--mb 50] [--slow-seconds 20]``
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402
import yaml  # noqa: E402

from corral.cli.client import load_config  # noqa: E402
from tests.e2e.cluster import FAST, ROOT, UpCluster, wait_for  # noqa: E402

WRITER = """\
import os, sys
line = "x" * 80
out = sys.stdout
for i in range(int(os.environ["LINES"])):
    out.write(f"line {i:09d} {line}\\n")
out.write("done-marker\\n")
out.flush()
import time
while True:
    time.sleep(60)
"""


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relay(c, args):
    """``(bytes, seconds, {process: CPU seconds})`` of ``corral logs chatty ARGS`` from its start until it
    printed the marker: the CPU each process of the path spent, which the machine's load does not change."""
    daemons = {"agent": c.daemons("agent")["node-1"], **c.daemons("reconciler")}
    before = {name: cpu_seconds(pid) for name, pid in daemons.items()}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "corral", "logs", "chatty", *args], env=c.env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    got, last = 0, b""
    while True:   # in blocks: a loop per line here would cost more CPU than the command it measures
        block = proc.stdout.read1(1 << 20)
        got += len(block)
        if not block or b"\ndone-marker\n" in last[-20:] + block:
            break
        last = block
    took = time.monotonic() - start
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in daemons.items()}
    cpu["cli"] = cpu_seconds(proc.pid)
    proc.terminate()
    proc.wait()
    return got, took, cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=50.0)
    p.add_argument("--slow-seconds", type=float, default=20.0)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="corral-bench-logs-")
    os.makedirs(os.path.join(work, "src"))
    with open(os.path.join(work, "src", "writer.py"), "w") as f:
        f.write(WRITER)
    lines = int(args.mb * 1e6 / 100)
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "chatty"},
           "spec": {"source": "./src", "env": {"LINES": str(lines)},
                    "processes": {"web": {"command": "python writer.py", "instances": 1}}}}
    with open(os.path.join(work, "app.yaml"), "w") as f:
        yaml.safe_dump(doc, f)
    timings = dict(FAST, log_max_bytes=20 * 1024 * 1024, log_keep=4)
    c = UpCluster(work, nodes=1, timings=timings)
    try:
        c.corral("apply", "-f", os.path.join(work, "app.yaml"), "--wait", "--timeout", "120s")
        t0 = time.monotonic()
        wait_for("the writer to finish", lambda: "done-marker" in c.corral("logs", "chatty", "--tail", "1").stdout,
                 timeout=600, interval=1)
        print(f"written: {lines} lines ({args.mb:g} MB) in about {time.monotonic() - t0:.1f}s")
        iid = c.instances("chatty")[0]["id"]

        # 1. throughput of `corral logs -f` through the whole log, and of `--tail 1000000`
        for args_ in (["-f"], ["--tail", "1000000"]):
            got, took, cpu = relay(c, args_)
            print(f"corral logs {' '.join(args_)}: {got / 1e6:.1f} MB in {took:.2f}s = {got / 1e6 / took:.1f} MB/s "
                  f"end to end (load {os.getloadavg()[0]:.2f}); CPU seconds: "
                  + ", ".join(f"{name} {secs:.2f}" for name, secs in sorted(cpu.items())))

        # 2. the agent's memory under a slow follower
        agent = c.daemons("agent")["node-1"]
        reconciler = c.daemons("reconciler")
        base = status_kb(agent, "VmRSS")
        urls, token = load_config(c.env)
        r = requests.get(f"{urls[0]}/v1/instances/{iid}/logs", params={"follow": "1"},
                         headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=60)
        read, peak_rss, end = 0, base, time.monotonic() + args.slow_seconds
        while time.monotonic() < end:
            read += len(r.raw.read(4096))
            time.sleep(0.01)
            peak_rss = max(peak_rss, status_kb(agent, "VmRSS"))
        r.close()
        print(f"slow follower: read {read / 1e6:.1f} MB of {args.mb:g} MB in {args.slow_seconds:g}s; "
              f"agent RSS {base / 1024:.1f} MiB before, peak while following {peak_rss / 1024:.1f} MiB "
              f"(+{(peak_rss - base) / 1024:.1f} MiB); agent VmHWM {status_kb(agent, 'VmHWM') / 1024:.1f} MiB")
        print("reconcilers' RSS: " + ", ".join(f"{n} {status_kb(pid, 'VmRSS') / 1024:.1f} MiB"
                                              for n, pid in sorted(reconciler.items())))
    finally:
        c.down()


if __name__ == "__main__":
    main()
