"""The loop's shell against real stores (SQLite and PostgreSQL): a stale leader's
sync writes nothing and sends nothing; a fresh reconciler waits for reports
before deciding; a drain moves instances off within maxUnavailable; a failed
app is retried alone."""
import json
import os
import subprocess

import jsonschema
import pytest

from corral import layer_access
from corral.settings import Timings
from corral.store import Fenced
from corral.store.base import DesiredInstance
from reconciler import agent_specs
from reconciler.loop import ALL, Controller
from reconciler.observed import Observed
from tests.support import fresh_store, mark_built

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "sha256:" + "c" * 64
SPEC = {"source": "./x", "processes": {"web": {"command": "python app.py", "instances": 2}},
        "update": {"maxSurge": 1, "maxUnavailable": 0}}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with fresh_store(request.param, str(tmp_path)) as s:
        yield s


class Bus:
    """Records what the controller sends."""

    def __init__(self):
        self.sent = []

    def send(self, peer, type_, body, epoch):
        self.sent.append((peer.decode(), body, epoch))
        return True


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def report(name, instances=(), epoch_seen=0, version=None):
    return {"node": {"name": name, "address": "127.0.0.1", "labels": {},
                     "capacity": {"cpu": 4, "memory": 8 << 30, "disk": 1 << 30},
                     **({"version": version} if version else {})},
            "instances": [{"id": i, "app": "hello", "process": "web", "state": "running", "ready": True}
                          for i in instances], "epoch_seen": epoch_seen}


def built_app(store, spec=SPEC):
    store.put_source("sha256:src", b"x")
    store.apply_apps([{"name": "hello", "labels": {}, "spec": spec, "source_digest": "sha256:src"}], actor="test")
    mark_built(store, "hello", spec, "sha256:src", IMAGE)


def controller(store, now=1000.0, reports=("n1", "n2", "n3"), started=0.0):
    observed = Observed(started_at=started)
    for n in reports:
        observed.record(report(n), now)
    clock = Clock(now)
    bus = Bus()
    timings = Timings(heartbeat_timeout=5, node_grace=30)
    return Controller(store, observed, bus, timings, "r1", clock=clock), bus, observed, clock


def converged(store):
    """A leader's controller over a built app placed and reported running at the leader's epoch by
    n1..n3: ``(epoch, controller, bus, observed, clock, {node: instance id})``."""
    built_app(store)
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    ctl, bus, observed, clock = controller(store)
    ctl.sync(epoch, [ALL])
    rows = {r.node: r.id for r in store.list_desired()}
    for n in ("n1", "n2", "n3"):
        observed.record(report(n, [rows[n]] if n in rows else [], epoch_seen=epoch), clock.t)
    return epoch, ctl, bus, observed, clock, rows


def test_a_stale_leaders_sync_writes_nothing_and_sends_nothing(store):
    built_app(store)
    stale = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.release_lease("leader", "r1")
    store.acquire_lease("leader", "r2", ttl=60)
    ctl, bus, _, _ = controller(store)
    with pytest.raises(Fenced):
        ctl.sync(stale, [ALL])
    assert store.list_desired() == []
    assert bus.sent == []
    assert store.get_app("hello").status == {}


def test_the_leader_places_spread_instances_and_records_the_revision(store):
    built_app(store)
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    ctl, bus, _, _ = controller(store)
    result = ctl.sync(epoch, [ALL])
    rows = store.list_desired()
    assert len(rows) == 2 and len({r.node for r in rows}) == 2
    assert {r.id for r in result.plan.boot} == {r.id for r in rows}
    assert [(r.revision, r.image) for r in store.list_revisions("hello")] == [(1, IMAGE)]
    assigned = {node: [i["id"] for i in body["instances"]] for node, body, e in bus.sent if e == epoch}
    assert sorted(sum(assigned.values(), [])) == sorted(r.id for r in rows)


def test_a_fresh_reconciler_waits_for_reports_before_deciding(store):
    built_app(store)
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.write_desired(epoch, [DesiredInstance("hello-web-a", "hello", "web", "n1", "1", IMAGE,
                                                agent_specs.agent_spec(SPEC, "web"), 0.0),
                                DesiredInstance("hello-web-b", "hello", "web", "n2", "1", IMAGE,
                                                agent_specs.agent_spec(SPEC, "web"), 0.0)], [])
    ctl, bus, observed, clock = controller(store, now=1002.0, reports=("n1",), started=1000.0)
    assert ctl.sync(epoch, [ALL]).deferred  # n2 has not reported since the start
    observed.record(report("n2", ["hello-web-b"]), 1002.5)
    result = ctl.sync(epoch, [ALL])
    assert not result.deferred and result.plan.empty
    assert [r.id for r in store.list_desired()] == ["hello-web-a", "hello-web-b"]


def test_a_drain_boots_the_replacement_before_it_stops_the_old_one(store):
    built_app(store)
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    ctl, bus, observed, clock = controller(store)
    ctl.sync(epoch, [ALL])
    rows = {r.node: r.id for r in store.list_desired()}
    for node, iid in rows.items():
        observed.record(report(node, [iid]), clock.t)
    victim = sorted(rows)[0]
    store.set_node_cordoned(victim, True, draining=True)
    first = ctl.sync(epoch, [ALL]).plan
    assert [r.node for r in first.boot] != [victim] and len(first.boot) == 1 and first.stop == ()
    replacement = first.boot[0]
    observed.record(report(replacement.node, [replacement.id]), clock.t)
    second = ctl.sync(epoch, [ALL]).plan
    assert [s.id for s in second.stop] == [rows[victim]]
    assert "draining" in second.stop[0].reason


def test_a_resync_sends_assignments_only_to_nodes_out_of_step(store):
    """An idle converged cluster is sent nothing; a node whose report lacks an
    assigned instance (its assign was lost) or that has not seen this epoch (a
    restarted agent) is sent its whole assignment again, once the heartbeat
    timeout since it was last sent has passed (time to act on it and report)."""
    epoch, ctl, bus, observed, clock, rows = converged(store)
    bus.sent.clear()
    assert ctl.sync(epoch, [ALL]).plan.empty
    assert bus.sent == []
    missed = sorted(rows)[0]
    idle = ({"n1", "n2", "n3"} - set(rows)).pop()
    observed.record(report(missed, [], epoch_seen=epoch), clock.t)
    observed.record(report(idle, [], epoch_seen=epoch - 1), clock.t)
    ctl.sync(epoch, [ALL])
    assert bus.sent == []  # both were sent this very assignment a moment ago
    clock.t += ctl.timings.heartbeat_timeout + 0.1
    ctl.sync(epoch, [ALL])
    assert {node: [i["id"] for i in body["instances"]] for node, body, _ in bus.sent} == {
        missed: [rows[missed]], idle: []}


def with_layers_on(store, base):
    """Give the app's build layers recorded by the builder at ``base``, as a builder does."""
    build = store.list_builds("hello")[0]
    store.set_build_layers(build.id, [{"kind": kind, "id": "sha256:" + c * 64, "sha256": c * 64, "size": 10,
                                       "url": f"{base}/layers/{kind}/{c * 64}.tar"} for kind, c in (("env", "e"), ("code", "c"))])


def test_each_node_is_sent_layer_urls_signed_for_it_on_every_live_builder(store):
    """The URL the builder recorded is signed for each node apart (a 0.1.0 agent uses it as it is); the
    layer is offered on every live builder too, the one that built it first; a credential is good only
    for its node and layer."""
    built_app(store)
    with_layers_on(store, "http://b1:7072")
    store.builder_seen("b1", "http://b1:7072")
    store.builder_seen("b2", "http://b2:7072")
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    ctl, bus, _, clock = controller(store)
    ctl.sync(epoch, [ALL])
    keys = [k for _, k in store.layer_keys()]
    sent = {node: body["instances"] for node, body, _ in bus.sent if body["instances"]}
    assert len(sent) == 2
    for node, instances in sent.items():
        for layer in instances[0]["artifact"]["layers"]:
            hexid = layer["id"][7:]
            assert layer["url"] == layer["urls"][0]
            assert [u.split("?")[0] for u in layer["urls"]] == [f"http://{b}:7072/layers/{layer['kind']}/{hexid}.tar"
                                                               for b in ("b1", "b2")]
            for url in layer["urls"]:
                query = url.split("?")[1]
                assert layer_access.check(query, layer["kind"], hexid, keys, clock.t) is None
                other = ({"n1", "n2", "n3"} - {node}).pop()
                assert layer_access.check(query.replace(f"node={node}", f"node={other}"), layer["kind"], hexid,
                                          keys, clock.t)[0] == 403


def test_an_agent_before_0_2_is_sent_one_url_it_knows_how_to_read(store):
    """One URL, on a live builder (here not the silent one that built it), signed for it."""
    built_app(store)
    with_layers_on(store, "http://b1:7072")
    store.builder_seen("b2", "http://b2:7072")
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    ctl, bus, observed, clock = controller(store, reports=())
    for n in ("n1", "n2"):
        observed.record(report(n, version="0.1.0"), clock.t)
    ctl.sync(epoch, [ALL])
    layers = [layer for _, body, _ in bus.sent for i in body["instances"] for layer in i["artifact"]["layers"]]
    assert layers and all(set(layer) == {"kind", "id", "url", "sha256", "size"} for layer in layers)
    released = subprocess.run(["git", "-C", ROOT, "show", "2782e51:schemas/wire/assign.schema.json"],
                              capture_output=True, text=True)   # the assign schema 0.1.0 checks with
    assert released.returncode == 0, released.stderr
    for _, body, _ in bus.sent:
        jsonschema.validate(body, json.loads(released.stdout))
    assert all(layer["url"].startswith("http://b2:7072/layers/") and "&sig=" in layer["url"] for layer in layers)


def test_layer_urls_are_signed_anew_before_they_run_out(store):
    """A converged node is sent nothing, until the URLs it holds have half their time or less to run:
    then it gets its assignment again with URLs that run longer (a node with no instance is not)."""
    epoch, ctl, bus, observed, clock, rows = converged(store)
    with_layers_on(store, "http://b1:7072")
    ttl = ctl.timings.layer_url_ttl
    first = layer_access.expiry(clock.t, ttl)
    bus.sent.clear()
    clock.t = first - ttl / 2 - 1
    for n in ("n1", "n2", "n3"):
        observed.record(report(n, [rows[n]] if n in rows else [], epoch_seen=epoch), clock.t)
    ctl.sync(epoch, [ALL])
    assert bus.sent == []
    clock.t = first - ttl / 2
    for n in ("n1", "n2", "n3"):
        observed.record(report(n, [rows[n]] if n in rows else [], epoch_seen=epoch), clock.t)
    ctl.sync(epoch, [ALL])
    assert sorted(node for node, _, _ in bus.sent) == sorted(rows)
    for node, body, _ in bus.sent:
        exp = int(body["instances"][0]["artifact"]["layers"][0]["url"].split("exp=")[1].split("&")[0])
        assert exp > first and exp - clock.t > ttl / 2
    bus.sent.clear()
    ctl.sync(epoch, [ALL])
    assert bus.sent == []


def test_the_desired_table_and_events_take_batches_of_hundreds_of_rows(store):
    """A plan of thousands of rows is written a hundred rows a statement: inserts,
    updates of some of them (the last of a repeated id wins), deletes, events and
    node facts (cordon and first_seen kept) all land whole, on both backends."""
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    spec = agent_specs.agent_spec(SPEC, "web")

    def row(i, node="n1"):
        return DesiredInstance(f"hello-web-{i:04d}", "hello", "web", node, "1", IMAGE, spec, float(i))

    store.write_desired(epoch, [row(i) for i in range(250)], [])
    store.write_desired(epoch, [row(i, "n2") for i in range(100, 280)] + [row(5, "n3"), row(5, "n4")],
                        {f"hello-web-{i:04d}" for i in range(150)} - {"hello-web-0005"})
    got = {r.id: r.node for r in store.list_desired()}
    assert got == {"hello-web-0005": "n4", **{f"hello-web-{i:04d}": "n2" for i in range(150, 280)}}
    store.add_events([("app", "hello", "Scheduled", f"instance {i}", "test") for i in range(230)])
    assert [e.message for e in store.list_events(name="hello", limit=1000)] == [f"instance {i}" for i in range(230)]
    store.upsert_nodes([(f"n{i:03d}", "127.0.0.1", {}, {"cpu": 2}, 1.0) for i in range(230)])
    store.set_node_cordoned("n007", True)
    store.upsert_nodes([(f"n{i:03d}", "10.0.0.1", {"zone": "a"}, {"cpu": 4}, 2.0) for i in range(5, 210)])
    nodes = {n.name: n for n in store.list_nodes()}
    assert len(nodes) == 230 and (nodes["n004"].address, nodes["n005"].address) == ("127.0.0.1", "10.0.0.1")
    assert (nodes["n007"].cordoned, nodes["n007"].labels, nodes["n007"].first_seen, nodes["n007"].last_seen) == \
        (True, {"zone": "a"}, 1.0, 2.0)


@pytest.mark.parametrize("version", [None, "0.2.0", "0.1.0"])
def test_a_node_back_from_lost_is_told_which_of_its_instances_were_replaced(store, version):
    """Its copies were replaced elsewhere while it was lost and no ready list holds them: its
    assignment names them as ``replaced`` (its agent stops them without a drain) until its
    reports no longer show them; a scale-down's stop on a node never lost names none. An agent
    of 0.1, whose schema refuses a field it does not know, is never sent it (it drains them)."""
    epoch, ctl, bus, observed, clock, rows = converged(store)
    gone = sorted(rows)[0]
    clock.t += ctl.timings.node_grace + ctl.timings.heartbeat_timeout + 1
    for n in {"n1", "n2", "n3"} - {gone}:
        observed.record(report(n, [rows[n]] if n in rows else [], epoch_seen=epoch), clock.t)
    lost = ctl.sync(epoch, [ALL]).plan
    assert [(s.id, s.node_lost) for s in lost.stop] == [(rows[gone], True)]
    bus.sent.clear()
    observed.record(report(gone, [rows[gone]], epoch_seen=epoch, version=version), clock.t)   # it comes back
    ctl.sync(epoch, [ALL])
    [(node, body, _)] = [s for s in bus.sent if s[0] == gone]
    assert body.get("replaced") == (None if version == "0.1.0" else [rows[gone]]) and body["instances"] == []
    observed.record(report(gone, [], epoch_seen=epoch - 1), clock.t)   # its copy stopped; out of step
    clock.t += ctl.timings.heartbeat_timeout + 0.1
    bus.sent.clear()
    ctl.sync(epoch, [ALL])
    [(node, body, _)] = [s for s in bus.sent if s[0] == gone]
    assert "replaced" not in body


def test_a_rotated_key_has_every_node_sent_urls_signed_with_it(store):
    """After a rotation, once the leader reads the new key, each node with instances is sent its URLs
    signed anew (so a second rotation leaves no node holding URLs no builder accepts)."""
    epoch, ctl, bus, observed, clock, rows = converged(store)
    with_layers_on(store, "http://b1:7072")
    bus.sent.clear()
    store.rotate_layer_key()
    ctl.layer_urls.keys._read_at = None   # the leader's next read of the keys (at most a minute later)
    ctl.sync(epoch, [ALL])
    assert sorted(node for node, _, _ in bus.sent) == sorted(rows)
    newest = store.layer_keys()[0][1]
    for _, body, _ in bus.sent:
        layer = body["instances"][0]["artifact"]["layers"][0]
        assert layer_access.check(layer["url"].split("?")[1], layer["kind"], layer["id"][7:], [newest], clock.t) is None
    bus.sent.clear()
    ctl.sync(epoch, [ALL])
    assert bus.sent == []
