"""Forward compatibility of the bus: a newer peer's fields are let in, bounded, and dropped before any
handler sees the body; what this version declares keeps every check it had."""
import copy

import pytest

import schemas
from corral.wire import compat
from corral.wire.envelope import Opener, Rejected, seal

KEY = b"k" * 32
NOW = 1_800_000_000.0
CLOSED = {"type": "object", "additionalProperties": False, "required": ["a"],
          "properties": {"a": {"type": "integer"},
                         "inner": {"type": "object", "additionalProperties": False, "properties": {"b": {"type": "string"}}},
                         "map": {"type": "object", "additionalProperties": {"type": "string"}},
                         "free": {"type": "object"},
                         "list": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                             "properties": {"c": {"enum": ["x"]}}}}}}
REPORT = {"node": {"name": "node-1", "address": "10.0.0.5", "labels": {"zone": "a"},
                   "capacity": {"cpu": 2, "memory": 1 << 30, "disk": 1 << 40}, "version": "0.3.0"},
          "epoch_seen": 3, "seq": 1, "instances": [{"id": "hello-web-1", "app": "hello", "process": "web",
                                                     "state": "running", "ready": True, "port": 8000}]}


@pytest.mark.parametrize("value,kept", [
    ({"a": 1, "z": 2}, {"a": 1}),
    ({"a": 1, "inner": {"b": "x", "z": [1]}}, {"a": 1, "inner": {"b": "x"}}),
    ({"a": 1, "map": {"any-key": "v"}}, {"a": 1, "map": {"any-key": "v"}}),
    ({"a": 1, "free": {"anything": {"deep": 1}}}, {"a": 1, "free": {"anything": {"deep": 1}}}),
    ({"a": 1, "list": [{"c": "x", "z": 1}, {"c": "x"}]}, {"a": 1, "list": [{"c": "x"}, {"c": "x"}]}),
], ids=["top", "nested", "map-keeps-its-keys", "free-form-kept-whole", "list-items"])
def test_known_only_drops_what_the_schema_does_not_declare(value, kept):
    before = copy.deepcopy(value)
    assert compat.known_only(CLOSED, value) == kept
    assert value == before, "known_only changed its input"


def test_opened_takes_bounded_unknown_fields_and_keeps_every_declared_check():
    import jsonschema
    before = copy.deepcopy(CLOSED)
    check = jsonschema.Draft202012Validator(compat.opened(CLOSED)).is_valid
    assert CLOSED == before, "opened changed its input"
    assert check({"a": 1, "new": "x", "inner": {"b": "y", "new": {"k": 1}}})
    assert not check({"a": "1", "new": "x"}), "a declared field of the wrong type got in"
    assert not check({"a": 1, "list": [{"c": "y", "new": 1}]}), "an enum stopped holding"
    assert not check({"new": 1}), "a required field stopped being required"
    assert check({"a": 1, **{f"n{i}": 1 for i in range(compat.MAX_UNKNOWN)}})
    assert not check({"a": 1, **{f"n{i}": 1 for i in range(compat.MAX_UNKNOWN + len(CLOSED["properties"]))}}), \
        "no bound on their number"
    assert not check({"a": 1, "new": "x" * 5000}) and not check({"a": 1, "new": list(range(300))})


def test_unknown_fields_at_every_level_of_a_report_are_dropped():
    op = Opener(KEY, window=30)
    body = copy.deepcopy(REPORT)
    body["future"] = 1
    body["node"]["future"] = "x"
    body["node"]["capacity"]["gpus"] = 4
    body["instances"][0]["future"] = [1, 2]
    msg = op.open(seal(KEY, "report", "node-1", 0, body, now=NOW), NOW)
    assert msg.body == REPORT


def test_the_wire_schemas_open_and_still_refuse_a_wrong_type():
    for name in ("report", "assign", "logs_open", "exec_open", "credit"):
        opened = compat.opened(schemas.load(f"wire/{name}"))
        assert "false" not in repr(opened.get("additionalProperties")).lower()
    op = Opener(KEY, window=30)
    body = copy.deepcopy(REPORT)
    body["future"] = 1
    body["epoch_seen"] = "3"
    with pytest.raises(Rejected) as info:
        op.open(seal(KEY, "report", "node-1", 0, body, now=NOW), NOW)
    assert info.value.reason == "schema" and "epoch_seen" in str(info.value)
