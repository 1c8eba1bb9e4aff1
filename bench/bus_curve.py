"""Signed bus round trips per second: cleartext, CurveZMQ (--bus-encryption required), and CurveZMQ with
the node's own key (a joined node: the ZAP handler names its key, each message is opened with its
signing key and checked against its name; corral/wire/credentials.py).

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

from corral.wire.bus import BusClient, BusServer, curve_keypair  # noqa: E402
from corral.wire.credentials import node_sign_key  # noqa: E402
from corral.wire.curve import server_public, server_secret  # noqa: E402

KEY = bytes(range(32))
MODES = ("off", "required", "node-key")


class OneNode:
    """The reconciler's view of one joined node, in memory (what reconciler/node_keys.py keeps)."""

    def __init__(self, name, public):
        self.name, self.public, self.key = name, public, node_sign_key(KEY, name, public)

    def admits(self, public):
        return True

    def holder(self, public):
        return (self.name, self.key) if public == self.public else None

    def sign_key(self, name):
        return self.key if name == self.name else None

    def refusal(self, name):
        return "impersonation" if name == self.name else None

    def join(self, name, token, public):
        return False, "no joins here"


def round_trips(mode, n):
    """Round trips per second of ``n`` sequential signed pings under ``mode``."""
    answers = eventlet.queue.LightQueue()
    server = None

    def on_server(peer, msg):
        server.send(peer, "ping", {"n": msg.body["n"]}, 0)
    curve = "off" if mode == "off" else "required"
    keypair = curve_keypair() if mode == "node-key" else None
    node = OneNode("n1", keypair[0]) if keypair else None
    server = BusServer("tcp://127.0.0.1:*", KEY, "r1", on_server, curve_secret=server_secret(KEY, curve),
                       identities=node).start()
    client = BusClient([server.endpoint], node.key if node else KEY, "n1", lambda endpoint, msg: answers.put(msg),
                       curve_server_public=server_public(KEY, curve), curve_keypair=keypair).start()
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
    p.add_argument("--repeat", type=int, default=3, help="runs per mode; the best and the median are printed (default 3)")
    p.add_argument("--mode", choices=MODES, action="append", help="only these modes (default: all three)")
    args = p.parse_args()
    modes = args.mode or MODES
    runs = {mode: [] for mode in modes}
    for _ in range(args.repeat):   # the modes take turns, so that a busy machine slows each alike
        for mode in modes:
            runs[mode].append(round_trips(mode, args.n))
    for mode in modes:
        rates = sorted(runs[mode])
        print(f"{mode:8s} {rates[-1]:8.0f} signed round trips/s best, {rates[len(rates) // 2]:8.0f} median "
              f"({args.repeat} runs x {args.n})")


if __name__ == "__main__":
    main()
