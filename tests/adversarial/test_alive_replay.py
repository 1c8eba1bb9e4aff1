"""A peer on the network tries to keep a dead node looking alive with ``alive`` heartbeats, against
a real reconciler's bus: one it captured and replays, one it forged without the key, and one that
names the node's report but comes from another agent process. None of them makes the node fresher
than its last real message, so a node that died still goes unreachable and then lost."""
import corral.green

corral.green.patch()

import time  # noqa: E402

import pytest  # noqa: E402
from eventlet.green import zmq  # noqa: E402

from corral import nodereport  # noqa: E402
from corral.stopping import Stop  # noqa: E402
from corral.wire.envelope import seal  # noqa: E402
from reconciler.daemon import Reconciler  # noqa: E402
from tests.support import fresh_store, free_port  # noqa: E402

KEY = b"k" * 32
NODE = "node-1"


def report(seq):
    return {"node": {"name": NODE, "address": "127.0.0.1", "labels": {},
                     "capacity": {"cpu": 2, "memory": 8 << 30, "disk": 10 << 30}, "conditions": []},
            "epoch_seen": 0, "alive": True, "started_at": 100.0, "seq": seq,
            "instances": [{"id": "x-web-1", "app": "x", "process": "web", "state": "running", "ready": True}]}


@pytest.fixture
def bus(tmp_path):
    """A real reconciler's bus, and a DEALER socket connected to it as the network's attacker."""
    with fresh_store("sqlite", str(tmp_path)) as store:
        rec = Reconciler(name="r1", store=store, key=KEY, bus=f"tcp://127.0.0.1:{free_port()}",
                         git_dir=str(tmp_path / "git"), stop=Stop())
        rec.bus.start()
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(rec.bus.endpoint)
        try:
            yield rec, sock
        finally:
            sock.close()
            ctx.term()
            rec.close()


def settle(rec, kind, count):
    """Wait until the reconciler accepted ``count`` messages of ``kind`` or rejected one more."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if rec.metrics.registry.get_sample_value("corral_reconciler_bus_messages_total", {"type": kind}) == count:
            return
        time.sleep(0.02)


def rejected(rec):
    return sum(rec.bus.stats()["rejected"].values())


def test_a_replayed_forged_or_foreign_alive_keeps_no_dead_node_fresh(bus):
    rec, sock = bus
    body = report(1)
    sock.send(seal(KEY, "report", NODE, 0, body, time.time()))
    settle(rec, "report", 1)
    alive = {"started_at": 100.0, "seq": 2, "epoch_seen": 0, "digest": nodereport.digest(body)}
    captured = seal(KEY, "alive", NODE, 0, alive, time.time())
    sock.send(captured)
    settle(rec, "alive", 1)
    heard = rec.observed.last_seen(NODE)
    assert rec.observed.latest(NODE).seq == 2, "the real alive was not taken"

    before = rejected(rec)
    sock.send(captured)                                                       # replayed
    sock.send(seal(b"x" * 32, "alive", NODE, 0, {**alive, "seq": 3}, time.time()))  # forged without the key
    deadline = time.monotonic() + 5
    while rejected(rec) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rejected(rec) == before + 2 and rec.bus.stats()["rejected"].get("replayed")
    foreign = seal(KEY, "alive", NODE, 0, {**alive, "seq": 4, "started_at": 200.0}, time.time())
    sock.send(foreign)                                                        # another agent process's
    settle(rec, "alive", 2)
    assert rec.observed.last_seen(NODE) == heard and rec.observed.latest(NODE).seq == 2, \
        "an alive that is not the node's own made it look fresher"
