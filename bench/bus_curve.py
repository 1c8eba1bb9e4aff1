"""Signed bus round trips per second, cleartext vs CurveZMQ (--bus-encryption required).

One BusServer and one BusClient in this process over loopback TCP; the client sends a ping,
the server answers it, the client waits for the answer: N sequential round trips per mode.
Run: .venv/bin/python bench/bus_curve.py [--n 5000] [--repeat 3]
"""
import corral.green

corral.green.patch()

import argparse  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import eventlet.queue  # noqa: E402

from corral.wire.bus import BusClient, BusServer  # noqa: E402
from corral.wire.curve import server_public, server_secret  # noqa: E402

KEY = bytes(range(32))


def round_trips(mode, n):
    """Round trips per second of ``n`` sequential signed pings under ``mode``."""
    answers = eventlet.queue.LightQueue()
    server = None

    def on_server(peer, msg):
        server.send(peer, "ping", {"n": msg.body["n"]}, 0)
    server = BusServer("tcp://127.0.0.1:*", KEY, "r1", on_server, curve_secret=server_secret(KEY, mode)).start()
    client = BusClient([server.endpoint], KEY, "n1", lambda endpoint, msg: answers.put(msg),
                       curve_server_public=server_public(KEY, mode)).start()
    try:
        while not client.send_all("ping", {"n": 0}):   # until connected (and, with CURVE, the handshake done)
            eventlet.sleep(0.01)
        answers.get(timeout=10)
        started = time.perf_counter()
        for i in range(n):
            client.send_all("ping", {"n": i})
            answers.get(timeout=10)
        return n / (time.perf_counter() - started)
    finally:
        client.close()
        server.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000, help="round trips per run (default 5000)")
    p.add_argument("--repeat", type=int, default=3, help="runs per mode; the best is printed (default 3)")
    args = p.parse_args()
    for mode in ("off", "required"):
        best = max(round_trips(mode, args.n) for _ in range(args.repeat))
        print(f"bus_encryption={mode:8s} {best:8.0f} signed round trips/s (best of {args.repeat} x {args.n})")


if __name__ == "__main__":
    main()
