"""Issue 14's finding 2, on a cleartext bus (``--bus-encryption off``) and a node holding the cluster key,
where a peer on the wire reads every message: it captures node-1's messages to reconciler r1 and replays
them to r2, as it did when a verified message moved node-1's name to the connection it came on (and r2's
messages for node-1, its assignments, exec input and logs, went to the attacker). Now each message names
the reconciler it is for: r2 refuses and counts them, and node-1 keeps its place at both."""
import corral.green

corral.green.patch()

import re  # noqa: E402
import time  # noqa: E402

from eventlet.green import zmq  # noqa: E402

from tests.adversarial.test_bus_encryption import Sniffer  # noqa: E402
from tests.adversarial.test_node_keys import WAIT, Cluster  # noqa: E402
from tests.support import wait_for  # noqa: E402

SIGNED = re.compile(rb"[0-9a-f]{64}\.\{")


def envelopes(stream):
    """The signed envelopes in the bytes of a cleartext ZMTP stream (each frame's header says its length)."""
    out = []
    for m in SIGNED.finditer(stream):
        start = m.start()
        long = int.from_bytes(stream[start - 8:start], "big")
        if stream[start - 9] in (2, 3) and long <= len(stream) - start:   # a long frame: flags, 8 bytes of length
            length = long
        elif stream[start - 2] in (0, 1):                                # a short one: flags, 1 byte of length
            length = stream[start - 1]
        else:
            continue
        out.append(bytes(stream[start:start + length]))
    return out


def test_node_1s_messages_to_r1_replayed_to_r2_are_refused_and_move_nothing(tmp_path):
    cluster = Cluster(tmp_path, reconcilers=2, encryption="off")
    r1_bus, r2_bus = cluster.buses
    recorder = Sniffer(r1_bus)
    ctx = zmq.Context()
    attacker = ctx.socket(zmq.DEALER)
    attacker.setsockopt(zmq.LINGER, 0)
    try:
        # node-1 reaches r1 through the recorder, r2 directly
        node = cluster.agent("node-1", buses=[recorder.endpoint, r2_bus], cluster_key=True)
        for api in cluster.apis:
            wait_for(f"node-1 ready at {api}", lambda: cluster.ready("node-1", api=api), WAIT)
        wait_for("node-1's messages to r1, naming r1",
                 lambda: [e for e in envelopes(bytes(recorder.sent)) if b'"to":"r1"' in e], WAIT)
        attacker.connect(r2_bus)
        before = cluster.rejected(cluster.apis[1]).get("recipient", 0)
        deadline = time.monotonic() + WAIT   # five of node-1's messages to r1, each replayed to r2 as it comes
        replayed = 0
        while replayed < 5 and time.monotonic() < deadline:
            captured = [e for e in envelopes(bytes(recorder.sent)) if b'"to":"r1"' in e]
            for data in captured[replayed:]:
                attacker.send(data)
            replayed = len(captured)
            time.sleep(0.1)
        sent = replayed
        try:
            rejected = wait_for("the replays refused at r2", lambda: cluster.rejected(cluster.apis[1]).get(
                "recipient", 0) >= before + sent and cluster.rejected(cluster.apis[1]), WAIT)
        except TimeoutError:
            raise AssertionError(f"{sent} replays sent, r2 counted {cluster.rejected(cluster.apis[1])}") from None
        assert rejected.get("recipient") >= sent >= 5, (sent, rejected)
        try:
            attacker.recv(flags=zmq.NOBLOCK)
            raise AssertionError("r2 sent the attacker a message")
        except zmq.Again:
            pass
        for api in cluster.apis:
            assert cluster.ready("node-1", api=api), f"node-1 not ready at {api} after the replays"
        assert node.poll() is None
    finally:
        attacker.close(0)
        ctx.term()
        recorder.close()
        cluster.close()
