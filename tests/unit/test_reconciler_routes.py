"""The route table derived from desired and observed state (reconciler/routes.py), the spec's
`routes` rules, and the conflicts an apply is refused for, by table."""
import pytest

from corral.routetable import Backend, Route
from corral.spec import SpecError
from corral.spec.model import validate_document
from corral.store.base import AppRecord, DesiredInstance
from reconciler.route_feed import RouteFeed, Touch
from reconciler.routes import app_claims, apply_conflicts, derive_routes, ready_backends


def spec(routes=None, ports=("web",), others=("worker",)):
    processes = {p: {"command": "run", "port": True} for p in ports}
    processes.update({p: {"command": "run"} for p in others})
    return {"source": ".", "processes": processes, **({"routes": routes} if routes is not None else {})}


def app(name, s, created=1.0, deleting=False):
    return AppRecord(name, {}, s, "sha256:x", 1, 1, deleting, {}, created, created)


def row(iid, app_name="shop", process="web", node="n1"):
    return DesiredInstance(iid, app_name, process, node, "1", "sha256:i", {}, 0.0)


def seen(node="n1", ready=True, state="running", port=4000, address="127.0.0.1"):
    return (node, {"ready": ready, "state": state, "port": port, "address": address})


@pytest.mark.parametrize("s, want", [
    (spec(), [("shop.localhost", "/", "web")]),                              # the default
    (spec(ports=("web", "admin")), []),                                      # two port processes: no default
    (spec(ports=()), []),
    (spec([{"host": "Shop.Example.com", "path": "/api/"}]), [("shop.example.com", "/api", "web")]),
    (spec([{"host": "*.shop.test", "process": "admin"}], ports=("web", "admin")), [("*.shop.test", "/", "admin")]),
    (spec([{"host": "bücher.test"}]), [("xn--bcher-kva.test", "/", "web")]),
])
def test_app_claims(s, want):
    assert app_claims("shop", s, "localhost") == want


@pytest.mark.parametrize("name, report, node_state, ready", [
    ("ready", seen(), "ready", True),
    ("cordoned node", seen(), "cordoned", True),
    ("not ready", seen(ready=False), "ready", False),
    ("stopping (drain begun)", seen(state="stopping", ready=False), "ready", False),
    ("starting", seen(state="starting"), "ready", False),
    ("unreachable node", seen(), "unreachable", False),
    ("lost node", seen(), "lost", False),
    ("no port yet", seen(port=None), "ready", False),
    ("reported by another node", seen(node="n2"), "ready", False),
    ("never reported", None, "ready", False),
])
def test_which_instances_take_requests(name, report, node_state, ready):
    reports = {"i1": report} if report else {}
    got = ready_backends([row("i1")], reports, {"n1": node_state, "n2": "ready"})
    assert bool(got.get(("shop", "web"))) is ready, name


def test_an_instance_leaves_the_table_when_its_desired_row_goes_though_it_still_reports_ready():
    reports = {"i1": seen(port=4001), "i2": seen(port=4002)}
    before = derive_routes([app("shop", spec())], [row("i1"), row("i2")], reports, {"n1": "ready"}, "localhost")
    assert [b.id for b in before[("shop.localhost", "/")].backends] == ["i1", "i2"]
    after = derive_routes([app("shop", spec())], [row("i2")], reports, {"n1": "ready"}, "localhost")
    assert after[("shop.localhost", "/")].backends == (Backend("i2", "127.0.0.1", 4002),)


def test_the_first_created_app_owns_a_contested_route_and_a_deleting_app_routes_nothing():
    a = app("a", spec([{"host": "x.test"}]), created=2.0)
    b = app("b", spec([{"host": "x.test"}]), created=1.0)
    c = app("c", spec(), deleting=True)
    table = derive_routes([a, b, c], [], {}, {}, "localhost")
    assert table[("x.test", "/")].app == "b" and ("c.localhost", "/") not in table


def test_an_app_with_no_ready_instance_keeps_its_route_with_no_backends():
    table = derive_routes([app("shop", spec())], [row("i1")], {}, {"n1": "ready"}, "localhost")
    assert table[("shop.localhost", "/")].backends == ()


@pytest.mark.parametrize("stored, incoming, want", [
    ([("a", spec([{"host": "x.test"}]))], [("b", spec([{"host": "x.test"}]))],
     ["app b: host x.test path / is already routed to app a; remove it from a's routes first, "
      "or choose another host or path"]),
    ([("a", spec([{"host": "x.test"}]))], [("b", spec([{"host": "x.test", "path": "/api"}]))], []),
    ([("a", spec([{"host": "x.test"}]))], [("a", spec([{"host": "x.test"}]))], []),          # a re-apply
    ([("a", spec([{"host": "x.test"}]))], [("a", spec([{"host": "y.test"}])), ("b", spec([{"host": "x.test"}]))],
     []),                                                                                  # a gives it up
    ([], [("a", spec([{"host": "x.test"}])), ("b", spec([{"host": "X.test."}]))],
     ["app b: host x.test path / is already routed to app a; remove it from a's routes first, "
      "or choose another host or path"]),
    ([("shop", spec())], [("b", spec([{"host": "shop.localhost"}]))],
     ["app b: host shop.localhost path / is already routed to app shop; remove it from shop's routes first, "
      "or choose another host or path"]),                                                  # a default route
], ids=["taken", "other-path", "reapply", "given-up", "same-apply", "default-route"])
def test_apply_conflicts(stored, incoming, want):
    assert apply_conflicts(stored, incoming, "localhost") == want


def doc(routes, processes=None):
    return {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "shop"},
            "spec": {"source": ".", "processes": processes or {"web": {"command": "run", "port": True}},
                     "routes": routes}}


@pytest.mark.parametrize("routes, processes, words", [
    ([{"host": "bad host"}], None, "is not a host name"),
    ([{"host": "a.test", "path": "api"}], None, "is not a path prefix"),
    ([{"host": "a.test", "process": "worker"}], {"web": {"command": "run", "port": True},
                                                 "worker": {"command": "run"}}, "is not a process of this app"),
    ([{"host": "a.test"}], {"web": {"command": "run", "port": True}, "admin": {"command": "run", "port": True}},
     "name the process to route to"),
    ([{"host": "a.test"}, {"host": "A.test", "path": "/"}], None, "routed twice"),
    ([{"host": "a.test", "port": 80}], None, "port"),
])
def test_spec_routes_are_checked(routes, processes, words):
    with pytest.raises(SpecError) as e:
        validate_document(doc(routes, processes))
    assert words in str(e.value)


def test_a_valid_route_gets_its_default_path():
    assert validate_document(doc([{"host": "a.test"}]))["spec"]["routes"] == [{"host": "a.test", "path": "/"}]


@pytest.mark.parametrize("reports, now, ok", [
    ([], 0.0, False),                            # heard nobody yet (just started)
    ([0.0], 1.0, False),                         # heard, but not for a whole timeout yet
    ([0.0, 1.0, 2.0, 3.0], 3.0, True),           # heard for a whole timeout
    ([0.0, 1.0, 2.0, 3.0], 4.4, True),
    ([0.0, 1.0, 2.0, 3.0], 4.6, False),          # silent for half the timeout: before a node can turn unreachable
    ([0.0, 1.0, 2.0, 3.0, 9.0], 10.0, False),    # back, but only for 1 s
    ([0.0, 1.0, 2.0, 3.0, 9.0, 10.0, 11.0, 12.0], 12.0, True),
], ids=["never", "too-soon", "in-touch", "quiet-a-moment", "silent", "back-too-soon", "back"])
def test_a_reconciler_publishes_routes_only_while_it_hears_the_agents(reports, now, ok):
    touch = Touch(3.0)
    for t in reports:
        touch.heard(t)
    assert touch.ok(now) is ok


def test_a_table_derived_while_the_touch_was_lost_is_not_published():
    """The store read inside compute() can hang through a partition and answer after the heal:
    the table it derives then counts every node as unreachable. It must never reach the routers."""
    clock = [3.0]
    touch = Touch(3.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        touch.heard(t)
    full = {("shop.localhost", "/"): Route("shop.localhost", "/", "shop", "web", (Backend("i1", "10.0.0.1", 4000),))}
    empty = {("shop.localhost", "/"): Route("shop.localhost", "/", "shop", "web", ())}
    tables = [full, empty]
    published = []

    def compute():
        table = tables.pop(0)
        if table is empty:
            clock[0] += 4.0   # the read hung past the touch (half the timeout of silence)
        return table

    feed = RouteFeed(lambda type, body: published.append(body), compute, lambda: None,
                     in_touch=lambda: touch.ok(clock[0]))
    feed.step()   # the first snapshot and the table with a backend
    feed.step()
    assert feed.routes == full and feed.seq == 1
    assert [b["seq"] for b in published] == [1, 1]   # the delta and the snapshot; nothing after
