"""Full reports and ``alive`` heartbeats: when the agent sends which (nodeagent/reporting.py), and
when a reconciler takes an ``alive`` as fresh news of the report it keeps (Observed.refresh)."""
from corral import nodereport
from nodeagent.reporting import Reporting
from reconciler.observed import Observed

R1, R2 = "tcp://r1:7071", "tcp://r2:7081"


def report(seq, started_at=100.0, state="running", load=(0.5, 0.4, 0.3), disk=10 << 30):
    return {"node": {"name": "node-1", "address": "127.0.0.1", "labels": {},
                     "capacity": {"cpu": 2, "memory": 8 << 30, "disk": disk},
                     "conditions": [], "load": list(load), "version": "0.2", "rejected_messages": {}},
            "epoch_seen": 1, "alive": True, "started_at": started_at, "seq": seq,
            "instances": [{"id": "b", "app": "x", "process": "web", "state": state, "ready": True},
                          {"id": "a", "app": "x", "process": "worker", "state": "running", "ready": False}]}


def alive_of(body, seq=None):
    return {"started_at": body["started_at"], "seq": seq or body["seq"] + 1, "epoch_seen": body["epoch_seen"],
            "digest": nodereport.digest(body)}


def test_the_digest_ignores_volatile_facts_and_the_order_of_instances_but_not_a_state():
    one = report(1)
    moved = report(2, load=(3.0, 2.0, 1.0), disk=1 << 30)
    moved["instances"].reverse()
    assert nodereport.digest(one) == nodereport.digest(moved)
    assert nodereport.digest(one) != nodereport.digest(report(3, state="failed"))


def test_a_reconciler_gets_the_full_report_until_it_acks_it_then_alives():
    rep, body = Reporting(refresh=10.0), report(1)
    digest = nodereport.digest(body)
    assert rep.messages(R1, body, digest, now=0.0) == ("report", body)
    assert rep.messages(R1, report(2), digest, now=1.0)[0] == "report", "no ack yet: a reconciler of 0.1.0 gets every one"
    assert rep.on_ack(R1, {"started_at": 100.0, "digest": digest}, 100.0) is False
    kind, alive = rep.messages(R1, report(3), digest, now=2.0)
    assert (kind, alive) == ("alive", {"started_at": 100.0, "seq": 3, "epoch_seen": 1, "digest": digest})
    assert rep.messages(R2, report(3), digest, now=2.0)[0] == "report", "each reconciler acks for itself"


def test_a_change_or_the_refresh_period_sends_the_full_report_again():
    rep, body = Reporting(refresh=10.0), report(1)
    digest = nodereport.digest(body)
    rep.messages(R1, body, digest, now=0.0)
    assert rep.on_ack(R1, {"started_at": 100.0, "digest": digest}, 100.0) is False
    changed = report(2, state="failed")
    assert rep.messages(R1, changed, nodereport.digest(changed), now=1.0)[0] == "report"
    rep.on_ack(R1, {"started_at": 100.0, "digest": nodereport.digest(changed)}, 100.0)
    assert rep.messages(R1, report(3, state="failed"), nodereport.digest(changed), now=5.0)[0] == "alive"
    assert rep.messages(R1, report(4, state="failed"), nodereport.digest(changed), now=11.0)[0] == "report", \
        "10 s after the last full report, volatile facts are refreshed"


def test_an_ack_of_nothing_or_of_another_agent_process_brings_the_full_report():
    rep, body = Reporting(refresh=10.0), report(1)
    digest = nodereport.digest(body)
    rep.messages(R1, body, digest, now=0.0)
    assert rep.on_ack(R1, {"started_at": None, "digest": None}, 100.0) is True, "one that just started: at once"
    assert rep.messages(R1, report(2), digest, now=1.0)[0] == "report"
    assert rep.on_ack(R1, {"started_at": 50.0, "digest": digest}, 100.0) is True  # an earlier agent process's
    assert rep.messages(R1, report(3), digest, now=2.0)[0] == "report"


def test_an_alive_refreshes_only_the_report_it_names():
    obs, body = Observed(started_at=0.0), report(5)
    obs.record(body, now=1.0)
    assert obs.refresh("node-1", alive_of(body), now=4.0) is True
    kept = obs.latest("node-1")
    assert (kept.received_at, kept.seq, kept.node) == (4.0, 6, body["node"])
    assert obs.last_seen("node-1") == 4.0


def test_an_alive_that_names_another_report_agent_process_or_node_refreshes_nothing():
    obs, body = Observed(started_at=0.0), report(5)
    obs.record(body, now=1.0)
    assert obs.refresh("node-1", alive_of(report(5, state="failed")), now=2.0) is False
    assert obs.refresh("node-1", alive_of(report(5, started_at=200.0)), now=2.0) is False, "a restarted agent"
    assert obs.refresh("node-2", alive_of(body), now=2.0) is False, "a node never reported"
    assert obs.last_seen("node-1") == 1.0


def test_a_delayed_alive_matches_but_moves_nothing_back():
    obs, body = Observed(started_at=0.0), report(5)
    obs.record(body, now=1.0)
    obs.refresh("node-1", alive_of(body, seq=9), now=3.0)
    assert obs.refresh("node-1", alive_of(body, seq=7), now=4.0) is True
    assert (obs.latest("node-1").seq, obs.last_seen("node-1")) == (9, 3.0)


def test_a_report_of_an_agent_that_sends_no_alive_keeps_no_digest_and_no_alive_matches_it():
    obs, body = Observed(started_at=0.0), report(5)
    del body["alive"]
    obs.record(body, now=1.0)
    assert obs.latest("node-1").digest is None
    assert obs.refresh("node-1", alive_of(body), now=2.0) is False


def test_a_reconciler_the_agent_could_not_reach_gets_the_full_report_first_when_back():
    rep, body = Reporting(refresh=10.0), report(1)
    digest = nodereport.digest(body)
    rep.messages(R1, body, digest, now=0.0)
    rep.on_ack(R1, {"started_at": 100.0, "digest": digest}, 100.0)
    assert rep.messages(R1, report(2), digest, now=1.0)[0] == "alive"
    rep.unsent(R1)   # it was not connected: restarting, perhaps
    assert rep.messages(R1, report(3), digest, now=2.0)[0] == "report"
