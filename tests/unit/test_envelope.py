"""Signed envelopes: what gets in, and every reason something does not.

The cluster key file helpers (corral.wire.keys) are tested at the end.
"""
import logging
import os
import stat

import pytest
from hypothesis import given, settings, strategies as st

from corral.wire import envelope
from corral.canonical import canonical_bytes as canonical
from corral.wire.envelope import MAX_BYTES, VERSION, Message, Opener, Rejected, seal
from corral.wire.keys import new_key_file, read_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = 1_800_000_000.0
WINDOW = 30.0

REPORT = {
    "node": {
        "name": "node-1",
        "address": "10.0.0.1",
        "labels": {"zone": "a"},
        "capacity": {"cpu": 4, "memory": 8 << 30, "disk": 100 << 30},
    },
    "epoch_seen": 3,
    "instances": [{"id": "hello-web-7f3a", "app": "hello", "process": "web", "state": "running", "ready": True}],
}


def opener(**kw):
    return Opener(KEY, WINDOW, **kw)


def rejected_reason(op, data, now=NOW):
    with pytest.raises(Rejected) as info:
        op.open(data, now)
    return info.value.reason


def resign(payload, key=KEY):
    """Wire bytes of an arbitrary payload, correctly signed: to reach the checks after the signature."""
    return envelope._sign(key, payload) + b"." + payload


def test_round_trip_gives_back_every_field():
    data = seal(KEY, "report", "node-1", 7, REPORT, now=NOW, nonce="n-1")
    op = opener()
    msg = op.open(data, NOW + 1)
    assert msg == Message(type="report", sender="node-1", epoch=7, timestamp=NOW, nonce="n-1", body=REPORT)
    assert op.accepted == 1 and sum(op.rejected.values()) == 0


def test_payload_is_canonical_json_after_the_signature():
    data = seal(KEY, "ping", "node-1", 0, {"n": 1}, now=NOW, nonce="abc")
    sig, dot, payload = data[:64], data[64:65], data[65:]
    assert dot == b"."
    assert payload == canonical({"v": VERSION, "type": "ping", "sender": "node-1", "epoch": 0,
                                 "ts": NOW, "nonce": "abc", "body": {"n": 1}})
    assert payload.startswith(b'{"body":{"n":1},"epoch":0')
    assert sig == envelope._sign(KEY, payload)


def test_default_nonces_differ():
    a = seal(KEY, "ping", "n", 0, {}, now=NOW)
    b = seal(KEY, "ping", "n", 0, {}, now=NOW)
    op = opener()
    assert op.open(a, NOW).nonce != op.open(b, NOW).nonce


def test_assign_body_is_accepted():
    body = {"node": "node-1", "instances": [{
        "id": "hello-web-7f3a", "app": "hello", "process": "web", "revision": "3", "image": "sha256:x",
        "artifact": {"layers": [
            {"kind": "env", "id": "sha256:" + "1" * 64, "url": "http://127.0.0.1:7072/layers/env/1.tar", "sha256": "0" * 64},
            {"kind": "code", "id": "sha256:" + "2" * 64, "url": "http://127.0.0.1:7072/layers/code/2.tar", "sha256": "0" * 64}]},
        "spec": {"command": ["python", "app.py"], "env": {}, "port": True, "restart": "always",
                 "drainPeriod": 2, "stopGracePeriod": 30},
    }]}
    assert opener().open(seal(KEY, "assign", "rec-1", 4, body, now=NOW), NOW).body == body


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda d: d[:-2] + b"7}", id="payload-tampered"),
    pytest.param(lambda d: (b"0" if d[:1] != b"0" else b"1") + d[1:], id="signature-tampered"),
    pytest.param(lambda d: d[:64].upper() + d[64:], id="signature-uppercased"),
    pytest.param(lambda d: d.replace(b'"epoch":1', b'"epoch":9'), id="epoch-raised"),
])
def test_tampering_is_a_bad_signature(mutate):
    data = seal(KEY, "ping", "node-1", 1, {"n": 5}, now=NOW)
    bad = mutate(data)
    assert bad != data
    op = opener()
    assert rejected_reason(op, bad) == "signature"
    assert op.rejected == {"signature": 1} and op.accepted == 0


def test_wrong_key_is_a_bad_signature():
    data = seal(OTHER_KEY, "ping", "node-1", 0, {}, now=NOW)
    assert rejected_reason(opener(), data) == "signature"


@pytest.mark.parametrize("age", [-WINDOW - 0.001, WINDOW + 0.001, -3600, 86400],
                         ids=["just-too-old", "just-too-new", "hour-old", "day-ahead"])
def test_timestamp_outside_window_is_expired(age):
    data = seal(KEY, "ping", "node-1", 0, {}, now=NOW + age)
    assert rejected_reason(opener(), data) == "expired"


@pytest.mark.parametrize("age", [-WINDOW, WINDOW, 0], ids=["edge-old", "edge-new", "now"])
def test_timestamp_at_window_edge_is_accepted(age):
    assert opener().open(seal(KEY, "ping", "node-1", 0, {}, now=NOW + age), NOW).type == "ping"


def test_same_bytes_twice_is_a_replay():
    data = seal(KEY, "ping", "node-1", 0, {}, now=NOW)
    op = opener()
    op.open(data, NOW)
    assert rejected_reason(op, data, NOW + 1) == "replayed"
    assert op.accepted == 1 and op.rejected == {"replayed": 1}


def test_same_nonce_in_a_new_message_is_a_replay():
    op = opener()
    op.open(seal(KEY, "ping", "node-1", 0, {"n": 1}, now=NOW, nonce="same"), NOW)
    assert rejected_reason(op, seal(KEY, "ping", "node-1", 0, {"n": 2}, now=NOW + 1, nonce="same"), NOW + 1) == "replayed"


def test_replay_after_the_window_is_expired():
    data = seal(KEY, "ping", "node-1", 0, {}, now=NOW)
    op = opener()
    op.open(data, NOW)
    assert rejected_reason(op, data, NOW + WINDOW + 1) == "expired"


def test_rejected_message_does_not_burn_its_nonce():
    op = opener()
    bad = seal(KEY, "ping", "node-1", 0, {"n": "not an integer"}, now=NOW, nonce="x")
    assert rejected_reason(op, bad) == "schema"
    assert op.open(seal(KEY, "ping", "node-1", 0, {}, now=NOW, nonce="x"), NOW).nonce == "x"


def test_unknown_type():
    assert rejected_reason(opener(), seal(KEY, "launch-missiles", "node-1", 0, {}, now=NOW)) == "type"


@pytest.mark.parametrize("body", [
    pytest.param({}, id="empty"),
    pytest.param({**REPORT, **{f"extra{i}": 1 for i in range(40)}}, id="too-many-unknown-fields"),
    pytest.param({**REPORT, "extra": "x" * 5000}, id="oversized-unknown-field"),
    pytest.param({**REPORT, "epoch_seen": -1}, id="negative-epoch"),
    pytest.param({**REPORT, "instances": [{**REPORT["instances"][0], "state": "dancing"}]}, id="bad-state"),
])
def test_report_failing_its_schema(body):
    op = opener()
    with pytest.raises(Rejected) as info:
        op.open(seal(KEY, "report", "node-1", 0, body, now=NOW), NOW)
    assert info.value.reason == "schema"
    assert "report body from 'node-1'" in str(info.value)


def test_custom_schemas_replace_the_defaults():
    op = Opener(KEY, WINDOW, schemas={"hello": {"type": "object", "required": ["who"]}})
    assert op.open(seal(KEY, "hello", "a", 0, {"who": "b"}, now=NOW), NOW).body == {"who": "b"}
    assert rejected_reason(op, seal(KEY, "hello", "a", 0, {}, now=NOW)) == "schema"
    assert rejected_reason(op, seal(KEY, "report", "a", 0, REPORT, now=NOW)) == "type"


def test_invalid_schema_is_refused_at_construction():
    with pytest.raises(Exception, match="not valid"):
        Opener(KEY, WINDOW, schemas={"x": {"type": "no-such-type"}})


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"garbage", id="garbage"),
    pytest.param(b"\x00" * 200, id="zeros"),
    pytest.param(b"a" * 64, id="signature-only"),
    pytest.param(b"a" * 64 + b"{}", id="no-separator"),
    pytest.param("not bytes", id="str"),
])
def test_garbage_is_malformed(data):
    assert rejected_reason(opener(), data) == "malformed"


def test_huge_input_is_malformed_without_being_signed_or_parsed():
    op = opener()
    calls = []
    real = envelope._sign
    envelope._sign = lambda *a: calls.append(a) or real(*a)
    try:
        assert rejected_reason(op, b"0" * 64 + b"." + b" " * MAX_BYTES) == "malformed"
    finally:
        envelope._sign = real
    assert calls == []


@pytest.mark.parametrize("payload, reason", [
    pytest.param(b"not json", "malformed", id="not-json"),
    pytest.param(b"[1,2]", "malformed", id="not-an-object"),
    pytest.param(b'{"v":2,"type":"ping","sender":"a","epoch":0,"ts":0,"nonce":"n","body":{}}', "version", id="v2"),
    pytest.param(b'{"v":true,"type":"ping","sender":"a","epoch":0,"ts":0,"nonce":"n","body":{}}', "version", id="v-bool"),
    pytest.param(b'{"type":"ping","sender":"a","epoch":0,"ts":0,"nonce":"n","body":{}}', "version", id="no-v"),
    pytest.param(b'{"v":1,"type":"ping","sender":"a","epoch":0,"ts":NaN,"nonce":"n","body":{}}', "malformed", id="ts-nan"),
    pytest.param(b'{"v":1,"type":"ping","sender":"a","epoch":-1,"ts":0,"nonce":"n","body":{}}', "malformed", id="epoch-negative"),
    pytest.param(b'{"v":1,"type":"ping","sender":"a","epoch":0,"ts":"0","nonce":"n","body":{}}', "malformed", id="ts-string"),
    pytest.param(b'{"v":1,"type":"ping","sender":"","epoch":0,"ts":0,"nonce":"n","body":{}}', "malformed", id="sender-empty"),
    pytest.param(b'{"v":1,"type":"ping","sender":"a","epoch":0,"ts":0,"nonce":"n","body":[]}', "malformed", id="body-list"),
    pytest.param(b'{"v":1,"type":"ping","sender":"a","epoch":0,"ts":0,"nonce":"n","body":{},'
                 + b",".join(b'"x%d":1' % i for i in range(17)) + b'}', "malformed", id="too-many-extra-fields"),
])
def test_signed_but_ill_formed_payloads(payload, reason):
    payload = payload.replace(b'"ts":0', b'"ts":%d' % NOW)
    assert rejected_reason(opener(), resign(payload)) == reason


@pytest.mark.parametrize("kwargs, field", [
    ({"type": ""}, "type"),
    ({"sender": ""}, "sender"),
    ({"epoch": -1}, "epoch"),
    ({"epoch": True}, "epoch"),
    ({"now": float("nan")}, "timestamp"),
    ({"body": [1]}, "body"),
    ({"body": {"x": float("inf")}}, "Out of range"),
    ({"nonce": ""}, "nonce"),
])
def test_seal_refuses_what_could_never_be_opened(kwargs, field):
    args = {"key": KEY, "type": "ping", "sender": "a", "epoch": 0, "body": {}, "now": NOW, **kwargs}
    with pytest.raises(ValueError, match=field):
        seal(**args)


def test_seal_refuses_oversized_bodies():
    with pytest.raises(ValueError, match="larger than"):
        seal(KEY, "ping", "a", 0, {"blob": "x" * MAX_BYTES}, now=NOW)


# -- nonce memory ----------------------------------------------------------

def test_nonce_memory_forgets_only_after_the_window():
    op = opener()
    for i in range(100):
        op.open(seal(KEY, "ping", "a", 0, {}, now=NOW, nonce=f"old-{i}"), NOW)
    assert len(op.nonces) == 100
    # still inside the window: remembered, and a replay is caught
    op.open(seal(KEY, "ping", "a", 0, {}, now=NOW + WINDOW, nonce="later"), NOW + WINDOW)
    assert len(op.nonces) == 101
    assert rejected_reason(op, seal(KEY, "ping", "a", 0, {}, now=NOW, nonce="old-0"), NOW + WINDOW) == "replayed"
    # once the old ones are past the window they are forgotten
    op.open(seal(KEY, "ping", "a", 0, {}, now=NOW + WINDOW + 1, nonce="latest"), NOW + WINDOW + 1)
    assert "old-0" not in op.nonces and "later" in op.nonces
    assert len(op.nonces) == 2


def test_nonce_memory_is_bounded_and_never_lets_a_replay_in():
    op = opener(max_nonces=50)
    sealed = [seal(KEY, "ping", "a", 0, {}, now=NOW + i * 0.01, nonce=f"n-{i}") for i in range(500)]
    for i, data in enumerate(sealed):
        op.open(data, NOW + 5)
        assert len(op.nonces) <= 50
    assert op.accepted == 500
    # every message is still inside the window; the forgotten ones must not get in again
    reasons = {rejected_reason(op, data, NOW + 5) for data in sealed}
    assert reasons == {"replayed", "expired"}
    assert op.accepted == 500
    # fresh messages newer than anything forgotten still get in
    op.open(seal(KEY, "ping", "a", 0, {}, now=NOW + 6, nonce="fresh"), NOW + 6)


# -- any change to any byte is refused --------------------------------------

SEALED = seal(KEY, "report", "node-1", 2, REPORT, now=NOW, nonce="fixed")
MUTATION_OPENER = Opener(KEY, WINDOW)  # shared: it is only ever asked to reject, which changes nothing


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_byte_mutation_is_rejected(data):
    index = data.draw(st.integers(0, len(SEALED) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != SEALED[index]), label="byte")
    mutated = SEALED[:index] + bytes([new]) + SEALED[index + 1:]
    with pytest.raises(Rejected) as info:
        MUTATION_OPENER.open(mutated, NOW)
    assert info.value.reason in {"signature", "malformed"}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SEALED)), st.binary(min_size=1, max_size=8))
def test_any_insertion_or_truncation_is_rejected(cut, extra):
    op = MUTATION_OPENER
    for mutated in (SEALED[:cut] + extra + SEALED[cut:], SEALED[:cut] + SEALED[cut + len(extra):]):
        if mutated != SEALED:
            with pytest.raises(Rejected):
                op.open(mutated, NOW)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text() | st.booleans() | st.none(), max_size=5),
       st.text(min_size=1, max_size=20))
def test_any_body_round_trips(body, sender):
    op = Opener(KEY, WINDOW, schemas={"any": {"type": "object"}})
    msg = op.open(seal(KEY, "any", sender, 0, body, now=NOW), NOW)
    assert (msg.body, msg.sender) == (body, sender)


# -- key files ------------------------------------------------------------

def test_new_key_file_writes_a_private_key_that_reads_back(tmp_path):
    path = tmp_path / "cluster.key"
    key = new_key_file(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_key(path) == key
    assert os.listdir(tmp_path) == ["cluster.key"]  # no temporary file left behind


def test_new_key_file_never_overwrites(tmp_path):
    path = tmp_path / "cluster.key"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="already exists"):
        new_key_file(path)
    assert path.read_text() == "keep me"
    assert os.listdir(tmp_path) == ["cluster.key"]


def test_read_key_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_key(tmp_path / "nope.key")


@pytest.mark.parametrize("content, message", [
    ("", "at least 32"),
    ("ab" * 31, "holds 31 bytes"),
    ("not hex at all", "hex"),
    ("x" * 5000, "larger than"),
])
def test_read_key_refuses_bad_contents(tmp_path, content, message):
    path = tmp_path / "k"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ValueError, match=message):
        read_key(path)


def test_read_key_refuses_a_directory(tmp_path):
    with pytest.raises(ValueError, match="directory|not a regular file"):
        read_key(tmp_path)


def test_read_key_accepts_surrounding_whitespace_and_longer_keys(tmp_path):
    path = tmp_path / "k"
    path.write_text("\n  " + "ab" * 48 + "  \n")
    path.chmod(0o600)
    assert read_key(path) == bytes([0xAB]) * 48


def test_read_key_warns_when_others_may_read_it(tmp_path, caplog):
    path = tmp_path / "k"
    path.write_text("cd" * 32)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="corral.wire.keys"):
        assert read_key(path) == bytes([0xCD]) * 32
    assert "chmod 600" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="corral.wire.keys"):
        read_key(path)
    assert caplog.text == ""
