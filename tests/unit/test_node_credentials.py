"""Join tokens and node credentials (corral/wire/credentials.py): the token's text round trip, one sentence
for one that is not, a signing key bound to name and key pair, the credential file 0600 in a 0700 folder,
and the ZAP answer (corral/wire/zap.py)."""
import os
import stat

import pytest
import zmq

from corral.wire import credentials
from corral.wire.curve import z85, z85_decode
from corral.wire.zap import reply

KEY = b"k" * 32


def test_z85_decode_undoes_z85_and_refuses_what_is_not_z85():
    for data in (bytes(32), bytes(range(32)), b"\xff" * 32):
        assert z85_decode(z85(data)) == data
    for bad in (b"abcd", b"abcd\x00", b"#####"):
        with pytest.raises(ValueError):
            z85_decode(bad)


def test_a_join_token_reads_back_as_itself():
    public, _ = zmq.curve_keypair()
    token = credentials.new_join_token(public)
    assert credentials.parse_join_token(token.text() + "\n") == token
    assert token.secret_sha256() == credentials.secret_sha256(token.secret) != token.secret


@pytest.mark.parametrize("text", ["", "cj1.0123", "cj2." + "a" * 16 + "." + "b" * 32 + "." + "c" * 64,
                                  "cj1." + "A" * 16 + "." + "b" * 32 + "." + "c" * 64, None],
                         ids=["empty", "cut", "another version", "upper case", "none"])
def test_what_is_not_a_join_token_is_one_sentence(text):
    with pytest.raises(ValueError, match=r"^the join token is not of the form cj1\.<16 hex>\.<32 hex>\.<64 hex>"):
        credentials.parse_join_token(text)


def test_a_nodes_signing_key_is_bound_to_its_name_and_its_key_pair():
    a, b = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    keys = {credentials.node_sign_key(KEY, name, pub) for name in ("node-1", "node-2") for pub in (a, b)}
    assert len(keys) == 4
    assert credentials.node_sign_key(KEY, "node-1", a) == credentials.node_sign_key(KEY, "node-1", a)
    assert credentials.node_sign_key(b"x" * 32, "node-1", a) not in keys


@pytest.mark.parametrize("name,ok", [("node-1", True), ("web1.example.com", True), ("n", True),
                                     ("-node", False), ("node-", False), ("no de", False), ("~x", False),
                                     ("a" * 254, False), ("", False), (7, False)])
def test_node_names_that_may_join(name, ok):
    assert (credentials.name_refusal(name) is None) is ok


def test_the_credential_is_kept_0600_in_a_0700_folder_and_read_back(tmp_path):
    public, secret = zmq.curve_keypair()
    cred = credentials.NodeCredential("node-1", public, secret, zmq.curve_keypair()[0], os.urandom(32))
    assert credentials.load_credential(tmp_path) is None
    path = credentials.save_credential(tmp_path, cred)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert credentials.load_credential(tmp_path) == cred


@pytest.mark.parametrize("content", [b"", b"{}", b"not json", b'{"name": "n", "public": "x", "secret": "y", '
                                     b'"server_public": "z", "sign_key": "00"}'], ids=["empty", "no fields", "text", "short keys"])
def test_a_credential_file_that_is_not_one_is_one_sentence(tmp_path, content):
    path = credentials.credential_path(tmp_path)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(ValueError, match=r"^node credential .* is not one \(remove it and join the node again\)$"):
        credentials.load_credential(tmp_path)


def test_zap_stamps_a_connection_with_its_key_refuses_a_revoked_one_and_only_takes_curve():
    revoked, live = zmq.curve_keypair()[0], zmq.curve_keypair()[0]

    def admits(key):
        return key != revoked
    assert reply([b"1.0", b"7", b"", b"1.2.3.4", b"", b"CURVE", z85_decode(live)], admits) == \
        [b"1.0", b"7", b"200", b"OK", live, b""]
    assert reply([b"1.0", b"8", b"", b"1.2.3.4", b"", b"CURVE", z85_decode(revoked)], admits)[2:4] == \
        [b"400", b"key refused"]
    assert reply([b"1.0", b"9", b"", b"1.2.3.4", b"", b"NULL"], admits)[2] == b"400"
    assert reply([b"2.0", b"9"], admits)[2] == b"500"
    assert reply([b"1.0", b"9", b"", b"", b"", b"CURVE", z85_decode(live)], lambda key: 1 / 0)[2] == b"400"
