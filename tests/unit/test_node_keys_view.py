"""The reconciler's view of the nodes' keys (reconciler/node_keys.py): whose a key is, revoked keys refused at
the handshake, a key not known looked for in the store at most once a second, a store that cannot be read
changing nothing, and joins refused with a sentence."""
import zmq

from corral.store import NodeKeyRecord, StoreError
from corral.wire.credentials import new_join_token, node_sign_key
from reconciler.node_keys import NodeKeys

KEY = b"k" * 32
SERVER = zmq.curve_keypair()[0]
A, B, C = (zmq.curve_keypair()[0] for _ in range(3))


class Store:
    """The store's node keys, as a list; ``down`` makes every call fail."""

    def __init__(self, records):
        self.records, self.reads, self.down, self.redeemed = list(records), 0, False, []

    def list_node_keys(self):
        if self.down:
            raise StoreError("connection refused")
        self.reads += 1
        return list(self.records)

    def redeem_join_token(self, token_id, secret_sha256, name, public_key):
        if self.down:
            raise StoreError("connection refused")
        self.redeemed.append((token_id, name, public_key))
        self.records.append(NodeKeyRecord(name, public_key, 1.0))
        return None


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def view(records, clock=None):
    store = Store(records)
    keys = NodeKeys(store, KEY, SERVER, clock=clock or Clock())
    keys.refresh()
    return store, keys


def test_a_live_key_is_its_node_a_revoked_one_is_refused_and_an_unknown_one_is_no_ones():
    store, keys = view([NodeKeyRecord("node-1", A.decode(), 1.0), NodeKeyRecord("node-2", B.decode(), 1.0, 5.0),
                        NodeKeyRecord("old", None, None, 5.0)])
    assert keys.holder(A) == ("node-1", node_sign_key(KEY, "node-1", A)) and keys.admits(A)
    assert keys.holder(B) == ("node-2", None) and not keys.admits(B)
    assert keys.holder(C) is None and keys.admits(C)
    assert [keys.refusal(n) for n in ("node-1", "node-2", "old", "new")] == ["impersonation", "revoked", "revoked", None]
    assert [keys.status(n) for n in ("node-1", "node-2", "old", "new")] == ["own key", "revoked", "revoked",
                                                                            "cluster key"]


def test_an_unknown_key_is_looked_for_at_most_once_a_second_and_a_store_down_changes_nothing():
    clock = Clock()
    store, keys = view([NodeKeyRecord("node-1", A.decode(), 1.0)], clock)
    reads = store.reads
    store.records.append(NodeKeyRecord("node-3", C.decode(), 2.0))   # joined through another reconciler
    assert keys.holder(C)[0] == "node-3" and store.reads == reads + 1
    for _ in range(100):   # a peer making up keys
        assert keys.holder(zmq.curve_keypair()[0]) is None
    assert store.reads == reads + 1
    clock.now += 1.0
    store.down = True
    assert keys.holder(B) is None and keys.holder(A)[0] == "node-1"   # no exception, the view kept


def test_a_join_is_recorded_or_refused_with_a_sentence():
    store, keys = view([])
    token = new_join_token(SERVER)
    ok, body = keys.join("node-1", token.text(), A)
    assert ok and body == {"name": "node-1", "sign_key": node_sign_key(KEY, "node-1", A).hex()}
    assert keys.holder(A)[0] == "node-1"
    assert keys.join("node-2", new_join_token(zmq.curve_keypair()[0]).text(), B) == \
        (False, "the join token was made for other reconcilers (their bus key is not this one's)")
    assert keys.join("bad name", token.text(), B)[1].startswith("node name 'bad name' is not one")
    store.down = True
    assert keys.join("node-2", new_join_token(SERVER).text(), B) == \
        (False, "the reconciler cannot reach its store (connection refused); try again")
