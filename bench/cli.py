"""How long the `corral` command takes to answer: wall time of a read-only verb, end to end.

Runs each of ``corral get apps``, ``corral get instances -o json`` and
``corral --help`` ``-n`` times (default 50, after one warm-up call each, the
three taken in turn so that a busy moment of the machine touches all of them
alike) as a subprocess of the installed console script (``.venv/bin/corral``),
and prints the median and p95 wall time of each, with the machine's load
average before and after.

Against a cluster it starts itself (``corral up`` with one node, a scratch
``XDG_DATA_HOME``/``XDG_CONFIG_HOME`` and ``--base-port`` on free ports; one
small app is applied so that the lists are not empty; SIGINT at the end), or,
with ``--api URL``, against a running one whose token is in the environment
variable ``--token-env`` names (default ``CORRAL_TOKEN``).

Run: ``.venv/bin/python bench/cli.py [-n 50] [--api URL --token-env CORRAL_TOKEN]``

Figures only: nothing here is asserted in a test.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support import free_base_port  # noqa: E402 (the test clusters' port search)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = [["get", "apps"], ["get", "instances", "-o", "json"], ["--help"]]

APP = """\
apiVersion: corral/v1
kind: App
metadata: {name: benchcli}
spec:
  source: ./src
  processes:
    web: {command: "python -c 'import time; time.sleep(86400)'", instances: 2}
"""


def wait_healthy(url, proc, timeout=90.0):
    """Return once ``url``/healthz answers 200; RuntimeError when ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"corral up exited with status {proc.returncode} before its API answered")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {url} did not answer /healthz within {timeout:g}s")


def percentile(values, q):
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def timed(corral, argv, env):
    """Wall seconds of one ``corral ARGV`` run to its exit; RuntimeError when it fails."""
    t0 = time.perf_counter()
    r = subprocess.run([corral] + argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"corral {' '.join(argv)} exited with {r.returncode}: {r.stderr.decode().strip()}")
    return took


def measure(corral, env, n):
    """``{command: [seconds] * n}``, the commands taken in turn after one warm-up call each."""
    for argv in COMMANDS:
        timed(corral, argv, env)
    times = {" ".join(argv): [] for argv in COMMANDS}
    for _ in range(n):
        for argv in COMMANDS:
            times[" ".join(argv)].append(timed(corral, argv, env))
    return times


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(times, before, after):
    print(f"load average before: {before}; after: {after}; {os.cpu_count()} CPUs")
    print(f"{'command':<34} {'n':>3} {'median ms':>10} {'p95 ms':>8} {'min ms':>8}")
    for cmd, ts in times.items():
        print(f"corral {cmd:<27} {len(ts):>3} {statistics.median(ts) * 1e3:>10.0f} "
              f"{percentile(ts, 0.95) * 1e3:>8.0f} {min(ts) * 1e3:>8.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=50, help="calls of each command (default 50)")
    p.add_argument("--corral", default=os.path.join(ROOT, ".venv", "bin", "corral"),
                   help="the console script to time (default: .venv/bin/corral)")
    p.add_argument("--api", metavar="URL", help="a running cluster's API, instead of starting one")
    p.add_argument("--token-env", default="CORRAL_TOKEN", metavar="NAME",
                   help="the environment variable holding --api's token (default CORRAL_TOKEN)")
    args = p.parse_args()
    env = dict(os.environ)
    env.pop("CORRAL_API", None)
    env.pop("CORRAL_TOKEN", None)
    if args.api:
        token = os.environ.get(args.token_env)
        if not token:
            sys.exit(f"--api needs the token in ${args.token_env}")
        env.update(CORRAL_API=args.api, CORRAL_TOKEN=token)
        before = load()
        times = measure(args.corral, env, args.n)
        report(times, before, load())
        return
    work = tempfile.mkdtemp(prefix="corral-bench-cli-")
    env.update(XDG_DATA_HOME=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
    base = free_base_port()
    log = open(os.path.join(work, "up.log"), "wb")
    up = subprocess.Popen([args.corral, "up", "--nodes", "1", "--base-port", str(base)], env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{base}", up)
        os.makedirs(os.path.join(work, "src"))
        with open(os.path.join(work, "app.yaml"), "w") as f:
            f.write(APP)
        subprocess.run([args.corral, "apply", "-f", os.path.join(work, "app.yaml")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        # the app's instances are placed (their build may still run: the lists are what is timed)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"benchcli" not in subprocess.run(
                [args.corral, "get", "instances"], env=env, stdout=subprocess.PIPE).stdout:
            time.sleep(0.5)
        time.sleep(2)   # let the start's work settle
        before = load()
        times = measure(args.corral, env, args.n)
        report(times, before, load())
        print(f"cluster: corral up --nodes 1 --base-port {base}; its log in {os.path.join(work, 'up.log')}")
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGINT)
            try:
                up.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        log.close()


if __name__ == "__main__":
    main()
