"""The change stream's pure core: what `get -w` and the dashboard are told, given two successive views."""
import pytest
from hypothesis import given, strategies as st

from corral.changes import diff, listing, parse_kinds

APP1 = {"name": "a", "ready": 1, "desired": 2}
APP1_READY = {"name": "a", "ready": 2, "desired": 2}
APP2 = {"name": "b", "ready": 0, "desired": 1}
NODE = {"name": "node-1", "state": "ready", "last_seen": "2026-12-03T07:00:00Z", "load": [0.1]}
NODE_LATER = dict(NODE, last_seen="2026-12-03T07:00:05Z", load=[0.3])
NODE_CORDONED = dict(NODE_LATER, state="cordoned")
EV1 = {"reason": "Scaled", "message": "one"}
EV2 = {"reason": "Ready", "message": "two"}


def types(changes):
    return [(c["kind"], c["type"], c["object"].get("name") or c["object"].get("message")) for c in changes]


@pytest.mark.parametrize("kind,old,new,want", [
    ("app", {}, {}, []),
    ("app", {"a": APP1}, {"a": APP1}, []),
    ("app", {}, {"a": APP1}, [("app", "ADDED", "a")]),
    ("app", {"a": APP1}, {"a": APP1_READY}, [("app", "MODIFIED", "a")]),
    ("app", {"a": APP1, "b": APP2}, {"b": APP2}, [("app", "DELETED", "a")]),
    ("app", {"b": APP2}, {"a": APP1}, [("app", "ADDED", "a"), ("app", "DELETED", "b")]),
    ("node", {"node-1": NODE}, {"node-1": NODE_LATER}, []),
    ("node", {"node-1": NODE}, {"node-1": NODE_CORDONED}, [("node", "MODIFIED", "node-1")]),
    ("event", {1: EV1}, {1: EV1, 2: EV2}, [("event", "ADDED", "two")]),
    ("event", {1: EV1, 2: EV2}, {2: EV2}, []),
    ("event", {2: EV2}, {2: dict(EV2, message="edited")}, []),
    ("event", {}, {10: EV2, 9: EV1}, [("event", "ADDED", "one"), ("event", "ADDED", "two")]),
], ids=["nothing", "unchanged", "added", "modified", "deleted", "added-and-deleted-in-key-order",
        "a-heartbeat-alone-is-no-change", "a-node-cordoned", "an-event-comes", "an-event-leaves-the-window-unsaid",
        "events-are-not-modified", "events-oldest-first-by-id"])
def test_diff(kind, old, new, want):
    assert types(diff(kind, old, new)) == want


def test_a_modified_node_carries_its_volatile_fields_as_they_are_now():
    (c,) = diff("node", {"node-1": NODE}, {"node-1": NODE_CORDONED})
    assert c["object"]["last_seen"] == NODE_CORDONED["last_seen"]


def test_a_deleted_object_is_sent_as_last_seen():
    (c,) = diff("app", {"a": APP1}, {})
    assert c == {"kind": "app", "type": "DELETED", "object": APP1}


def test_the_views_are_not_touched():
    old, new = {"a": dict(APP1)}, {"a": dict(APP1_READY)}
    diff("app", old, new)
    assert old == {"a": APP1} and new == {"a": APP1_READY}


def test_listing_is_everything_added():
    assert types(listing("app", {"b": APP2, "a": APP1})) == [("app", "ADDED", "a"), ("app", "ADDED", "b")]


@pytest.mark.parametrize("text,want", [
    ("", ("app", "instance", "node", "event")),
    ("apps", ("app",)),
    ("nodes,apps,nodes", ("node", "app")),
    ("instance, event", ("instance", "event")),
])
def test_parse_kinds(text, want):
    assert parse_kinds(text) == want


def test_an_unknown_kind_is_named():
    with pytest.raises(ValueError, match="'pods' is not one of apps, instances, nodes, events"):
        parse_kinds("apps,pods")


def apply(view, changes, key):
    """What a watcher holds after ``changes``, starting from ``view``."""
    out = dict(view)
    for c in changes:
        if c["type"] == "DELETED":
            out.pop(c["object"][key], None)
        else:
            out[c["object"][key]] = c["object"]
    return out


views = st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3), max_size=6).map(
    lambda d: {k: {"name": k, "ready": v} for k, v in d.items()})


@given(old=views, new=views)
def test_a_watcher_that_applies_the_changes_holds_the_new_view(old, new):
    changes = diff("app", old, new)
    assert apply(old, changes, "name") == new
    assert len(changes) == len({c["object"]["name"] for c in changes}), "an object changed twice in one diff"
    assert diff("app", new, new) == []
