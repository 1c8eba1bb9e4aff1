"""`corral up` refuses ports another program holds, before it writes or starts anything.

Seen: two clusters picked the same base port; the second one's reconcilers died on
bind while the first one's API answered its health check, so it reported itself up.
"""
import os
import socket
import subprocess
import sys

from corral.cli.up import listen_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_listening_port_is_named_once():
    ports = listen_ports(7070, 2, nodes=2)
    assert [p for p, _ in ports] == [7070, 7071, 7072, 7073, 7074, 7075, 7080, 7081, 7083, 7085, 8080, 8081]
    assert len(set(p for p, _ in ports)) == len(ports), "two daemons on one port"
    assert dict(ports)[7081] == "the bus of reconciler-2"
    assert dict(ports)[7085] == "the metrics of node-2"
    assert (dict(ports)[7083], dict(ports)[8080]) == ("the route feed of reconciler-2", "the router")
    assert (dict(ports)[7073], dict(ports)[7074]) == ("the route feed of reconciler-1", "the builder's metrics")
    assert [p for p, _ in listen_ports(7070, 1, router_port=9000)][-2:] == [9000, 9001]


def test_a_taken_port_is_one_sentence_and_nothing_is_written(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        base = held.getsockname()[1]   # the held port is reconciler-1's API, the first one checked
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
        r = subprocess.run([sys.executable, "-m", "corral", "up", "--data-dir", str(tmp_path / "data"),
                            "--base-port", str(base)], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert r.returncode != 0
    assert f"port {base} (the API of reconciler-1) is not free" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "config").exists()
