"""Signed layer URLs: what the leader makes and what a builder accepts (corral/layer_access.py)."""
import urllib.parse

import pytest

from corral import layer_access
from corral.layer_keyring import LayerKeyRing

KEY, OLD, OTHER = b"k" * 32, b"o" * 32, b"x" * 32
HEX = "ab" * 32
NOW = 1_800_000_000


def query(node="node-1", exp=NOW + 600, key=KEY, kind="env", hexid=HEX, **over):
    params = {"node": node, "exp": exp, "sig": layer_access.sign(key, kind, hexid, node, exp)}
    params.update(over)
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


def test_a_credential_for_this_layer_and_node_in_time_passes():
    assert layer_access.check(query(), "env", HEX, [KEY], NOW) is None


def test_a_url_signed_with_the_key_before_a_rotation_still_passes():
    assert layer_access.check(query(key=OLD), "env", HEX, [KEY, OLD], NOW) is None


@pytest.mark.parametrize("qs", ["", "x=1", "nodes=a"], ids=["nothing", "other-params", "near-name"])
def test_no_credential_is_401(qs):
    status, sentence = layer_access.check(qs, "env", HEX, [KEY], NOW)
    assert status == 401 and "credential" in sentence


@pytest.mark.parametrize("qs,why", [
    (query(kind="code"), "another kind"),
    (query(hexid="cd" * 32), "another layer"),
    (query(node="node-2").replace("node=node-2", "node=node-1"), "signed for another node"),
    (query(key=OTHER), "another key"),
    (query(key=OLD), "a key rotated out"),
    (query(exp=NOW), "expired now"),
    (query(exp=NOW - 1), "expired"),
    (query().replace("exp=" + str(NOW + 600), "exp=" + str(NOW + 6000)), "expiry moved"),
    (query(sig="0" * 64), "a made-up signature"),
    (query(sig=layer_access.sign(KEY, "env", HEX, "node-1", NOW + 600)[:-1] + "0"), "one digit changed"),
    (query(sig="Z" * 64), "not hex"),
    (query(exp="-5"), "a negative expiry"),
    (query(exp="9" * 40), "an expiry too long"),
    (query(node=""), "an empty node"),
    (query(sig=None), "no signature"),
    (query() + "&sig=" + "0" * 64, "two signatures"),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_a_bad_credential_is_403(qs, why):
    status, sentence = layer_access.check(qs, "env", HEX, [KEY], NOW)
    assert status == 403, why
    assert sentence.endswith("\n") and len(sentence) < 200


@pytest.mark.parametrize("now,exp", [
    (36_000, 39_600),     # 10:00:00 -> 11:00 (an hour to run)
    (36_600, 39_600),     # 10:10:00 -> 11:00 (50 min)
    (37_799, 39_600),     # 10:29:59 -> 11:00 (30 min 1 s)
    (37_800, 41_400),     # 10:30:00 -> 11:30
])
def test_expiry_steps_by_half_the_ttl_and_always_leaves_more_than_half(now, exp):
    assert layer_access.expiry(now, 3600) == exp
    assert exp - now > 1800
    assert not layer_access.renewal_due(exp, now, 3600)


def test_renewal_is_due_once_half_the_ttl_or_less_is_left():
    assert layer_access.renewal_due(39_600, 37_800, 3600)
    assert not layer_access.renewal_due(39_600, 37_799, 3600)
    assert not layer_access.renewal_due(None, 37_800, 3600)


def test_the_recorder_first_when_alive_then_other_live_builders_then_the_recorder_when_silent():
    builders = [("b2", "http://b2:7072", 1.0), ("b1", "http://b1:7072", 2.0), ("b3", "http://b3:7072/", 500.0)]
    assert layer_access.layer_bases("http://b1:7072", builders, 60) == ["http://b1:7072", "http://b2:7072"]
    gone = [("b2", "http://b2:7072", 1.0), ("b1", "http://b1:7072", 90.0)]
    assert layer_access.layer_bases("http://b1:7072", gone, 60) == ["http://b2:7072", "http://b1:7072"]
    assert layer_access.layer_bases("http://b9:7072", [], 60) == ["http://b9:7072"]


def test_a_signed_layer_carries_its_urls_for_its_node_only():
    layer = {"kind": "code", "id": "sha256:" + HEX, "url": f"http://b1:7072/layers/code/{HEX}.tar",
             "sha256": "cd" * 32, "size": 10}
    out = layer_access.signed_layer(layer, "node-2", NOW + 600, KEY, ["http://b1:7072", "http://b2:7072"])
    assert {k: out[k] for k in ("kind", "id", "sha256", "size")} == {k: layer[k] for k in ("kind", "id", "sha256", "size")}
    assert out["url"] == out["urls"][0] and out["urls"][1].startswith(f"http://b2:7072/layers/code/{HEX}.tar?")
    for url in out["urls"]:
        path, _, qs = url.partition("?")
        assert layer_access.check(qs, "code", HEX, [KEY], NOW) is None
        assert dict(urllib.parse.parse_qsl(qs))["node"] == "node-2"
    plain = layer_access.signed_layer(layer, "node-2", NOW + 600, KEY, ["http://b1:7072", "http://b2:7072"],
                                      mirrors=False)
    assert "urls" not in plain and plain["url"] == out["url"]
    assert layer_access.base_of(layer["url"]) == "http://b1:7072"
    alone = layer_access.signed_layer(layer, "node-2", NOW + 600, KEY, [])
    assert alone["url"].startswith(layer["url"] + "?") and "urls" not in alone


class CountingStore:
    def __init__(self):
        self.reads = 0
        self.keys = [(1, KEY)]

    def layer_keys(self):
        self.reads += 1
        return list(self.keys)


def test_the_key_ring_reads_the_store_at_most_every_refresh_and_after_a_miss_every_retry():
    store, now = CountingStore(), [0.0]
    ring = LayerKeyRing(store, refresh=60, retry=5, clock=lambda: now[0])
    assert ring.signing() == KEY and ring.checking() == [KEY] and store.reads == 1
    store.keys = [(2, OTHER), (1, KEY)]
    assert ring.checking(missed=True) == [KEY] and store.reads == 1   # read a moment ago
    now[0] = 5.0
    assert ring.checking(missed=True) == [OTHER, KEY] and store.reads == 2
    now[0] = 9.0
    assert ring.checking(missed=True) == [OTHER, KEY] and store.reads == 2
    now[0] = 70.0
    assert ring.signing() == OTHER and store.reads == 3


def test_the_key_ring_keeps_its_keys_while_the_store_is_away():
    from corral.store import StoreError

    store, now = CountingStore(), [0.0]
    ring = LayerKeyRing(store, refresh=60, retry=5, clock=lambda: now[0])
    assert ring.checking() == [KEY]

    def gone():
        raise StoreError("the store is away")
    store.layer_keys = gone
    now[0] = 100.0
    assert ring.checking(missed=True) == [KEY] and ring.signing() == KEY
    with pytest.raises(StoreError):
        LayerKeyRing(store).signing()
