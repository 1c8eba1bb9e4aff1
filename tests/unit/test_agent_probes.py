"""tcp health checks (nodeagent/probes.py) against real sockets: numeric addresses without a lookup,
names still looked up, and the check's connection closed with a reset (no TIME_WAIT left behind)."""
import socket

import pytest

from nodeagent import probes
from nodeagent.health import Check


def listener(family=socket.AF_INET, host="127.0.0.1"):
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(8)
    return srv


@pytest.mark.parametrize("address, family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6),
                                             ("localhost", None), ("node-1.example", None)])
def test_numeric_family(address, family):
    assert probes.numeric_family(address) == family


def time_wait_with(port):
    """Sockets in TIME_WAIT (state 06 in /proc/net/tcp) with ``port`` at either end."""
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            ends = [int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)]
            if fields[3] == "06" and port in ends:
                found.append(line.strip())
    return found


def test_tcp_check_passes_and_leaves_no_time_wait_socket():
    srv = listener()
    port = srv.getsockname()[1]
    try:
        ok, detail = probes.probe(Check(kind="tcp", target=True, timeout=2.0), "127.0.0.1", port, {}, "/")
        assert ok, detail
        assert detail == f"connected to 127.0.0.1:{port}"
        conn, _ = srv.accept()
        with conn:
            try:   # a reset, as a rule; an end of file if the kernel took the reset before the accept
                assert conn.recv(1) == b""
            except ConnectionResetError:
                pass
        # closed with a reset: no TIME_WAIT on the checking side (a plain close leaves one per check)
        assert time_wait_with(port) == []
    finally:
        srv.close()


def test_tcp_check_by_name_still_passes():
    srv = listener()
    try:
        ok, detail = probes.probe(Check(kind="tcp", target=True, timeout=2.0), "localhost", srv.getsockname()[1],
                                  {}, "/")
        assert ok, detail
    finally:
        srv.close()


def test_tcp_check_of_a_closed_port_fails_with_the_reason():
    srv = listener()
    port = srv.getsockname()[1]
    srv.close()
    ok, detail = probes.probe(Check(kind="tcp", target=True, timeout=2.0), "127.0.0.1", port, {}, "/")
    assert not ok
    assert detail == f"connect to 127.0.0.1:{port}: Connection refused"


def test_tcp_check_of_a_port_that_never_answers_fails_after_its_timeout():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue: further SYNs are dropped, the connect hangs
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        ok, detail = probes.probe(Check(kind="tcp", target=True, timeout=0.3), "127.0.0.1", port, {}, "/")
        assert not ok
        assert detail == f"connect to 127.0.0.1:{port}: timed out"
    finally:
        for filler in fillers:
            filler.close()
        srv.close()
