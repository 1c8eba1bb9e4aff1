"""A real agent daemon and a real reconciler (its bus, its Observed) over a real ZeroMQ socket:
between changes the agent's heartbeats are ``alive``s that keep the node fresh, and a reconciler
that starts afresh on the same endpoint gets the full report at once. (An agent with a reconciler
that never acks, one of 0.1.0, keeps getting full reports: tests/integration/test_agent_daemon.py's
fake reconciler is one.)"""
import corral.green

corral.green.patch()

import pytest  # noqa: E402

from corral.settings import Timings  # noqa: E402
from corral.stopping import Stop  # noqa: E402
from corral.wire.keys import read_key  # noqa: E402
from reconciler.daemon import Reconciler  # noqa: E402
from tests.integration.test_agent_daemon import NODE, agent, key_file, wait_for  # noqa: F401 (fixtures)
from tests.support import fresh_store, free_port  # noqa: E402

HEARTBEAT = 0.2


class Real:
    """A reconciler as its bus handler runs it, with the surface the agent fixture waits on."""

    def __init__(self, tmp_path, key, endpoint):
        self._store = fresh_store("sqlite", str(tmp_path))
        store = self._store.__enter__()
        self.rec = Reconciler(name="r1", store=store, key=key, bus=endpoint, git_dir=str(tmp_path / "git"),
                              stop=Stop(), timings=Timings(heartbeat=HEARTBEAT))
        self.rec.bus.start()
        self.endpoint = endpoint

    def latest(self):
        return self.rec.observed.latest(NODE)

    def count(self, kind):
        return self.rec.metrics.registry.get_sample_value("corral_reconciler_bus_messages_total", {"type": kind}) or 0

    def close(self):
        self.rec.close()
        self._store.__exit__(None, None, None)


@pytest.fixture
def reconciler(tmp_path, key_file):  # noqa: F811 (the agent fixture's reconciler, here a real one)
    real = Real(tmp_path / "r1", read_key(key_file), f"tcp://127.0.0.1:{free_port()}")
    yield real
    real.close()


def test_an_idle_node_sends_alives_that_keep_it_fresh_and_a_full_report_to_a_fresh_reconciler(
        agent, reconciler, tmp_path, key_file):
    agent(heartbeat=HEARTBEAT)
    wait_for("a first alive", lambda: reconciler.count("alive") >= 1)
    reports, alives = reconciler.count("report"), reconciler.count("alive")
    before = reconciler.latest()
    wait_for("ten more alives", lambda: reconciler.count("alive") >= alives + 10)
    assert reconciler.count("report") - reports <= 1, "an idle node re-sent its full report between alives"
    kept = reconciler.latest()
    assert kept.received_at > before.received_at and kept.seq >= before.seq + 10, \
        "the alives did not keep the node fresh"
    assert kept.node["name"] == NODE and kept.digest

    # A reconciler restarted on the same endpoint keeps nothing: the agent's next message to it is the full
    # report (it could not reach it meanwhile), or an alive answered by an ack of nothing, then the report.
    endpoint = reconciler.endpoint
    reconciler.close()
    fresh = Real(tmp_path / "r1-again", read_key(key_file), endpoint)
    try:
        wait_for("the full report at the fresh reconciler", fresh.latest, timeout=10)
        assert fresh.latest().node["name"] == NODE
        wait_for("alives again", lambda: fresh.count("alive") >= 3)
    finally:
        fresh.close()
