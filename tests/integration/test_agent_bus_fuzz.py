"""The agent's receiving path under random and mutated envelopes (Hypothesis) from a raw ROUTER:
it keeps running, changes nothing it was not told to, and counts every drop in
``rejected_messages`` (its reports and its /metrics)."""
import corral.green

corral.green.patch()

import time  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
import requests  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from corral.wire.envelope import seal  # noqa: E402
from corral.wire.keys import read_key  # noqa: E402
from tests.support import free_port  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    HTTP_SERVER, NODE, agent, assignment, image_server, key_file, reconciler, running, wait_for)

EPOCH = 5


def envelopes(key):
    """Messages that must all be dropped: noise, mutations of a validly signed assign that would
    stop every instance, and validly signed assigns that are stale or for another node."""
    def signed(epoch, node):
        return seal(key, "assign", "reconciler-1", epoch, {"node": node, "instances": []}, time.time())

    valid = st.builds(lambda: signed(EPOCH + 1, NODE))
    flipped = st.tuples(valid, st.integers(0, 10_000), st.integers(1, 255)).map(
        lambda t: t[0][:t[1] % len(t[0])] + bytes([t[0][t[1] % len(t[0])] ^ t[2]]) + t[0][t[1] % len(t[0]) + 1:])
    truncated = st.tuples(valid, st.integers(0, 10_000)).map(lambda t: t[0][:t[1] % len(t[0])])
    extended = st.tuples(valid, st.binary(min_size=1, max_size=64)).map(lambda t: t[0] + t[1])
    spliced = st.tuples(valid, st.binary(max_size=64)).map(lambda t: t[0].split(b".", 1)[0] + b"." + t[1])
    stale = st.integers(0, EPOCH - 1).map(lambda e: signed(e, NODE))
    other_node = st.builds(lambda: signed(EPOCH + 1, "node-2"))
    return st.one_of(st.binary(max_size=512), flipped, truncated, extended, spliced, stale, other_node)


def rejected_total(reconciler):
    return sum(reconciler.latest()["node"]["rejected_messages"].values())


def test_random_and_mutated_envelopes_are_dropped_counted_and_change_nothing(agent, reconciler, image_server, key_file):
    port = free_port()
    handle = agent(run_args={"metrics": f"127.0.0.1:{port}"})
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER)], epoch=EPOCH)
    pid = wait_for("hello-web-1 running", lambda: running(reconciler, "hello-web-1"))["pid"]
    # the routing id of the agent's connection, as the server learned it from its verified reports
    peer, _ = reconciler.server._routes[NODE.encode()]   # (routing id, the key its messages are signed with)
    sent = [rejected_total(reconciler)]
    key = read_key(key_file)

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(envelopes(key), min_size=1, max_size=40))
    def batch(messages):
        for data in messages:
            reconciler.server._sock.send_multipart([peer, data])   # raw frames: no sealing on this side
        sent[0] += len(messages)
        wait_for(f"{sent[0]} rejected messages reported", lambda: rejected_total(reconciler) == sent[0])

    batch()
    assert handle.proc.poll() is None, "the agent keeps running"
    inst = running(reconciler, "hello-web-1")
    assert inst and inst["pid"] == pid and inst["restarts"] == 0, "nothing it was not told to do"
    assert reconciler.latest()["epoch_seen"] == EPOCH
    reasons = reconciler.latest()["node"]["rejected_messages"]
    assert {"assign_stale", "assign_other_node"} & set(reasons) and len(reasons) >= 3, reasons
    # the agent's /metrics counts them as its reports do, by reason (nodeagent/metrics.py)
    families = text_string_to_metric_families(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    counted = {s.labels["reason"]: s.value for f in families for s in f.samples
               if s.name == "corral_agent_rejected_messages_total"}
    assert counted == {reason: float(n) for reason, n in reconciler.latest()["node"]["rejected_messages"].items()}
