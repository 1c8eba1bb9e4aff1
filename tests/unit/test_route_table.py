"""The route table (corral/routetable.py) and the choice of publisher (router/sources.py), by table."""
import pytest

from router import sources
from corral.hostnames import normalize_host, normalize_path
from corral.routetable import RESYNC, Backend, Route, Table, apply_delta, conflicts, delta_body, from_snapshot, route_to_json


@pytest.mark.parametrize("raw, want", [
    ("Shop.Example.COM", "shop.example.com"),
    ("shop.example.com:8080", "shop.example.com"),
    ("shop.example.com.", "shop.example.com"),
    ("shop.example.com.:443", "shop.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example:80", "xn--bcher-kva.example"),
    ("127.0.0.1:8080", "127.0.0.1"),
    ("[::1]:8080", "[::1]"),
    ("[::1]", "[::1]"),
    ("*.example.com", "*.example.com"),
    ("", None),
    ("a..b", None),
    ("host:port", None),
    ("host:99999999", None),
    ("-bad.example", None),
    ("bad_.example", None),
    ("a b", None),
    ("[::1", None),
    ("[::1]x", None),
    ("evil.com/x", None),
    ("x" * 64 + ".com", None),
], ids=lambda v: repr(v)[:30])
def test_normalize_host(raw, want):
    assert normalize_host(raw) == want


@pytest.mark.parametrize("raw, want", [("/", "/"), ("/api/", "/api"), ("/api", "/api"), ("api", None), ("", None)])
def test_normalize_path(raw, want):
    assert normalize_path(raw) == want


def route(host, path="/", app="a", backends=()):
    return Route(host, path, app, "web", tuple(backends))


TABLE = Table("s", 1, {r.key: r for r in [
    route("shop.example.com", "/", "shop"),
    route("shop.example.com", "/api", "api"),
    route("shop.example.com", "/api/v2", "api2"),
    route("*.example.com", "/", "wild"),
    route("*.b.example.com", "/", "wildb"),
    route("hello.localhost", "/docs", "docs"),
]})


@pytest.mark.parametrize("host, path, app", [
    ("shop.example.com", "/", "shop"),
    ("shop.example.com", "/cart", "shop"),
    ("shop.example.com", "/api", "api"),
    ("shop.example.com", "/api/", "api"),
    ("shop.example.com", "/api/users", "api"),
    ("shop.example.com", "/apix", "shop"),          # whole segments only
    ("shop.example.com", "/api/v2/x", "api2"),      # longest prefix
    ("shop.example.com", "/api/v20", "api"),
    ("other.example.com", "/", "wild"),
    ("x.b.example.com", "/", "wildb"),              # the most specific wildcard
    ("x.y.example.com", "/", "wild"),               # a wildcard reaches deeper names
    ("example.com", "/", None),                     # but not its own suffix
    ("hello.localhost", "/", None),                 # no prefix of this host matches
    ("hello.localhost", "/docs/x", "docs"),
    ("unknown.test", "/", None),
], ids=lambda v: str(v))
def test_match(host, path, app):
    found = TABLE.match(host, path)
    assert (found.app if found else None) == app


B1, B2 = Backend("i1", "127.0.0.1", 1001), Backend("i2", "127.0.0.1", 1002)


def snapshot(stream, seq, routes):
    return {"kind": "snapshot", "stream": stream, "seq": seq, "routes": [route_to_json(r) for r in routes]}


def test_snapshot_then_deltas_give_the_same_table_as_a_snapshot_of_the_end():
    start = [route("a.test", backends=[B1]), route("b.test", backends=[B1, B2])]
    end = [route("a.test", backends=[B1, B2]), route("c.test", backends=[B2])]
    table = from_snapshot(snapshot("s", 7, start))
    body = delta_body("s", 8, table.routes, {r.key: r for r in end})
    assert body["base"] == 7 and body["remove"] == [["b.test", "/"]]
    after = apply_delta(table, body)
    assert after.seq == 8 and after.routes == from_snapshot(snapshot("s", 8, end)).routes
    assert after.match("a.test", "/").backends == (B1, B2)
    assert after.match("b.test", "/") is None


def test_no_change_makes_no_delta():
    routes = {r.key: r for r in [route("a.test", backends=[B1])]}
    assert delta_body("s", 2, routes, dict(routes)) is None


@pytest.mark.parametrize("stream, seq, base, want", [
    ("s", 6, 5, 6),          # in step
    ("s", 5, 4, 5),          # already applied: unchanged
    ("s", 8, 7, RESYNC),     # a gap: 6 and 7 were lost
    ("t", 6, 5, RESYNC),     # another stream: the publisher restarted
], ids=["next", "duplicate", "gap", "new-stream"])
def test_apply_delta(stream, seq, base, want):
    table = Table("s", 5, {})
    body = {"kind": "delta", "stream": stream, "seq": seq, "base": base, "set": [], "remove": []}
    got = apply_delta(table, body)
    assert got == RESYNC if want == RESYNC else got.seq == want


def test_conflicts_name_the_first_claimant_as_owner():
    claims = [("shop", "shop.test", "/"), ("api", "shop.test", "/api"), ("shop", "shop.test", "/api"),
              ("other", "shop.test", "/")]
    assert conflicts(claims) == [("shop.test", "/api", "api", "shop"), ("shop.test", "/", "shop", "other")]


# -- sources: which publisher's table is served --------------------------------------------

def tick(stream, seq, leader=False):
    return {"kind": "tick", "stream": stream, "seq": seq, "leader": leader}


def delta(stream, seq, base):
    return {"kind": "delta", "stream": stream, "seq": seq, "base": base, "set": [], "remove": []}


@pytest.mark.parametrize("messages, want_seq, resync", [
    ([snapshot("s", 3, [])], 3, False),
    ([delta("s", 1, 0)], None, True),                                  # delta before any snapshot
    ([snapshot("s", 3, []), delta("s", 4, 3)], 4, False),
    ([snapshot("s", 3, []), delta("s", 5, 4)], None, True),            # gap
    ([snapshot("s", 3, []), tick("s", 3)], 3, False),
    ([snapshot("s", 3, []), tick("s", 4)], None, True),                # the last delta was lost
    ([snapshot("s", 3, []), tick("t", 1)], None, True),                # the publisher restarted
    ([snapshot("s", 5, []), snapshot("s", 4, [])], 5, False),          # a late older snapshot
    ([snapshot("s", 5, []), snapshot("t", 1, [])], 1, False),          # a new stream's snapshot
], ids=["snapshot", "delta-first", "delta", "gap", "tick", "tick-ahead", "tick-new-stream",
        "older-snapshot", "new-stream-snapshot"])
def test_receive(messages, want_seq, resync):
    src = sources.Source()
    for i, body in enumerate(messages):
        src, again = sources.receive(src, body, now=float(i))
    assert again is resync
    assert (src.table.seq if src.table else None) == want_seq
    assert src.heard_at == float(len(messages) - 1)


def live(seq, heard_at, leader=False, epoch=0):
    return sources.Source(Table("s", seq, {}), heard_at, leader, epoch)


@pytest.mark.parametrize("given, want", [
    ({}, None),
    ({"r1": live(1, 10.0), "r2": live(1, 9.0)}, "r1"),                  # no leader: heard from last
    ({"r1": live(1, 10.0), "r2": live(1, 9.0, leader=True)}, "r2"),     # the leader
    ({"r1": live(1, 10.0, leader=True), "r2": live(1, 4.0, leader=True)}, "r1"),  # r2 is not live
    ({"r1": live(1, 4.0), "r2": live(1, 3.0)}, None),                   # no one is live
    ({"r1": sources.Source(None, 10.0), "r2": live(1, 9.0)}, "r2"),     # r1 is resyncing
    ({"r1": live(5, 10.0, True, 3), "r2": live(7, 9.5, True, 4)}, "r2"),   # two leaders: the higher epoch
])
def test_choose(given, want):
    assert sources.choose(given, now=10.0, timeout=3.0) == want
