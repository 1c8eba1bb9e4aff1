"""Benchmark: an agent fetching one layer (download, verify, unpack) over HTTP on loopback.

The layer is a folder packed the way the builder packs it (``tar --create
--sort=name --numeric-owner``, builder/archives.py), by default this
checkout's own ``.venv`` (about 140 MB and 4.8k files, the size of a real
environment layer). It is served by ``python -m http.server`` in a process of
its own, and fetched with :func:`nodeagent.pull.ensure_layer` into a fresh
images dir, in a process greened as the agent is (``corral.green.patch()``),
``--runs`` times, after a ``sync`` each. Printed: each run's wall time, its CPU time (this process
and its children, so ``tar`` where one runs), and the longest gap of a green
thread that wants to run every 10 ms (what a heartbeat would wait), then the
median wall time.

    .venv/bin/python bench/layer_fetch.py [--folder PATH] [--runs 5] [--dir /dev/shm]
"""
import corral.green

corral.green.patch()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nodeagent.pull import ensure_layer  # noqa: E402


def pack(folder, dest):
    """Pack ``folder`` into ``dest`` as the builder does; return (hex sha256, size, member count)."""
    subprocess.run(["tar", "--create", "--file", dest, "--sort=name", "--numeric-owner", "--directory", folder, "."],
                   check=True)
    digest = hashlib.sha256()
    with open(dest, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    members = subprocess.run(["tar", "--list", "--file", dest], check=True, capture_output=True).stdout.count(b"\n")
    return digest.hexdigest(), os.path.getsize(dest), members


def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=os.path.join(ROOT, ".venv"), help="the folder to pack as the layer")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default=None,
                        help="where the images dir goes (e.g. /dev/shm: the figure without the disk)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="corral-bench-layer-", dir=args.dir)
    server = None
    try:
        served = os.path.join(work, "served")
        os.mkdir(served)
        sha, size, members = pack(args.folder, os.path.join(served, "layer.tar"))
        print(f"layer: {args.folder}, {size / 1e6:.0f} MB, {members} members")
        server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                                   "--directory", served], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(re.search(r" port (\d+)", server.stdout.readline()).group(1))
        layer = {"kind": "env", "id": "sha256:" + "e" * 64, "url": f"http://127.0.0.1:{port}/layer.tar",
                 "sha256": sha, "size": size}
        walls = []
        for run in range(args.runs):
            images_dir = os.path.join(work, f"images-{run}")
            gaps, stop = [0.0], []

            def ticker():
                last = time.monotonic()
                while not stop:
                    eventlet.sleep(0.01)
                    now = time.monotonic()
                    gaps[0] = max(gaps[0], now - last - 0.01)
                    last = now

            os.sync()   # the previous run's writes are not this one's to wait for
            tick = eventlet.spawn(ticker)
            eventlet.sleep(0.02)
            start, cpu0 = time.monotonic(), cpu()
            ensure_layer(images_dir, layer)
            wall, used = time.monotonic() - start, cpu() - cpu0
            stop.append(True)
            tick.wait()
            walls.append(wall)
            print(f"run {run + 1}: {wall:.2f} s wall, {used:.2f} s CPU, longest green stall {gaps[0] * 1000:.0f} ms")
            shutil.rmtree(images_dir)
        print(f"median: {statistics.median(walls):.2f} s")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
