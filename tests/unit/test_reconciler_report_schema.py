"""The bus checks report bodies with jsonschema-rs first and falls back to jsonschema:
the verdict must be jsonschema's for any body, valid or mangled."""
import time

import jsonschema
from hypothesis import given, settings, strategies as st

import schemas
from corral.wire import compat
from corral.wire.envelope import Opener, Rejected, seal

KEY = b"k" * 32
SLOW = jsonschema.Draft202012Validator(compat.opened(schemas.load("wire/report")))   # as the bus opens it
OPENER = Opener(KEY, window=30)  # every seal has a fresh nonce, so one opener serves every case


def instance(i):
    return {"id": f"app-web-{i:04x}", "app": "app", "process": "web", "state": "running", "ready": True,
            "pid": 10 + i, "port": 8000 + i, "address": "127.0.0.1", "revision": "1",
            "image": "sha256:" + "b" * 64, "restarts": 0, "started_at": 1.5}


def report(n):
    return {"node": {"name": "node-1", "address": "127.0.0.1", "labels": {"zone": "a"},
                     "capacity": {"cpu": 2, "memory": 1 << 30, "disk": 1 << 40}, "load": [0.1, 0.2, 0.3]},
            "epoch_seen": 1, "started_at": 100.0, "seq": 1, "instances": [instance(i) for i in range(n)]}


json_value = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False,
                          allow_infinity=False) | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=6)


@st.composite
def mangled_report(draw):
    """A valid report with one value somewhere in it replaced, added or removed."""
    body = report(draw(st.integers(0, 3)))
    where = draw(st.sampled_from(["top", "node", "capacity", "instance"]))
    target = {"top": body, "node": body["node"], "capacity": body["node"]["capacity"],
              "instance": body["instances"][0] if body["instances"] else body}[where]
    key = draw(st.sampled_from(sorted(target) + ["extra"]))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(json_value)
    return body


def verdict(body):
    try:
        OPENER.open(seal(KEY, "report", "node-1", 0, body, now=time.time()), time.time())
        return True
    except Rejected as e:
        assert e.reason == "schema", e
        return False


@settings(max_examples=300, deadline=None)
@given(body=mangled_report())
def test_the_bus_accepts_exactly_what_jsonschema_accepts(body):
    assert verdict(body) == SLOW.is_valid(body)


def test_a_refused_report_names_where_and_why():
    body = report(2)
    body["instances"][1]["state"] = "dancing"
    try:
        OPENER.open(seal(KEY, "report", "node-1", 0, body, now=time.time()), time.time())
    except Rejected as e:
        assert e.reason == "schema" and "at instances/1/state" in str(e) and "'dancing'" in str(e)
    else:
        raise AssertionError("a report with an unknown state was let in")
    assert verdict(report(10)) is True
