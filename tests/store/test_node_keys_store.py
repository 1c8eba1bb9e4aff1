"""Join tokens and nodes' own keys in the store (both backends): a token is spent once, an expired or
unknown one refused with a sentence, a name or a key held by a live node not taken, a revoked node
joined again with a fresh token."""
import hashlib

import pytest

from corral.store import NodeKeyRecord


def sha(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def test_a_join_token_records_the_nodes_key_once(store):
    store.add_join_token("t1", sha("s1"), ttl=600, actor="admin")
    assert store.redeem_join_token("t1", sha("s1"), "node-1", "PUB1") is None
    [key] = store.list_node_keys()
    assert (key.name, key.public_key, key.revoked_at) == ("node-1", "PUB1", None)
    assert store.redeem_join_token("t1", sha("s1"), "node-2", "PUB2") == \
        "the join token was already used (by node node-1); ask for a new one"
    assert [k.name for k in store.list_node_keys()] == ["node-1"]
    assert sorted(e.reason for e in store.list_events(kind="node")) == ["JoinTokenCreated", "Joined"]


def test_the_node_that_spent_a_token_may_ask_again_with_the_same_key_and_nobody_else(store):
    store.add_join_token("t1", sha("s1"), ttl=600, actor="admin")
    assert store.redeem_join_token("t1", sha("s1"), "node-1", "PUB1") is None
    assert store.redeem_join_token("t1", sha("s1"), "node-1", "PUB1") is None   # its first answer was lost
    used = "the join token was already used (by node node-1); ask for a new one"
    assert store.redeem_join_token("t1", sha("s1"), "node-1", "PUB2") == used    # another key of that name
    assert store.redeem_join_token("t1", sha("s1"), "node-2", "PUB1") == used
    assert store.revoke_node_key("node-1", "admin")
    assert store.redeem_join_token("t1", sha("s1"), "node-1", "PUB1") == used    # nor once it is revoked
    [key] = store.list_node_keys()
    assert (key.public_key, key.revoked_at is not None) == ("PUB1", True)


@pytest.mark.parametrize("token_id, secret, ttl, sentence", [
    ("t1", "wrong", 600, "the join token is not one this cluster issued"),
    ("nope", "s1", 600, "the join token is not one this cluster issued"),
    ("t1", "s1", -1, "the join token has expired; ask for a new one"),
], ids=["wrong secret", "unknown id", "expired"])
def test_a_bad_join_token_is_refused_and_not_spent(store, token_id, secret, ttl, sentence):
    store.add_join_token("t1", sha("s1"), ttl=ttl, actor="admin")
    assert store.redeem_join_token(token_id, sha(secret), "node-1", "PUB1") == sentence
    assert store.list_node_keys() == []


def test_a_live_node_keeps_its_name_and_its_key(store):
    for t in ("t1", "t2", "t3"):
        store.add_join_token(t, sha(t), ttl=600, actor="admin")
    assert store.redeem_join_token("t1", sha("t1"), "node-1", "PUB1") is None
    assert store.redeem_join_token("t2", sha("t2"), "node-1", "PUB9") == \
        "node node-1 has already joined with another key; revoke it first (corral node revoke node-1)"
    assert store.redeem_join_token("t2", sha("t2"), "node-2", "PUB1") == "this key is already another node's"
    assert store.redeem_join_token("t2", sha("t2"), "node-2", "PUB2") is None   # t2 was not spent by the refusals


def test_a_revoked_node_is_kept_as_such_and_may_join_again_with_a_new_token(store):
    store.add_join_token("t1", sha("t1"), ttl=600, actor="admin")
    store.redeem_join_token("t1", sha("t1"), "node-1", "PUB1")
    assert store.revoke_node_key("node-1", actor="admin") is True
    [key] = store.list_node_keys()
    assert key.public_key == "PUB1" and key.revoked_at is not None
    store.add_join_token("t2", sha("t2"), ttl=600, actor="admin")
    assert store.redeem_join_token("t2", sha("t2"), "node-1", "PUB3") is None
    assert store.list_node_keys()[0].public_key == "PUB3" and store.list_node_keys()[0].revoked_at is None


def test_a_node_that_never_joined_is_revoked_by_name_and_an_unknown_one_not_at_all(store):
    store.upsert_node("old-node", "10.0.0.9", {}, {"cpu": 1}, 100.0)
    assert store.revoke_node_key("old-node", actor="admin") is True
    assert store.revoke_node_key("old-node", actor="admin") is True   # again: still revoked
    [key] = store.list_node_keys()
    assert isinstance(key, NodeKeyRecord) and key.public_key is None and key.revoked_at is not None
    assert store.revoke_node_key("nobody", actor="admin") is False
    assert [k.name for k in store.list_node_keys()] == ["old-node"]
