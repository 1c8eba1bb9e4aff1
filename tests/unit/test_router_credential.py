"""The router's credential (corral/wire/routercred.py): what it holds, that nothing else follows from it,
and that a file that is not one is one sentence naming it."""
import argparse
import hashlib
import hmac
import json
import os
import stat

import pytest
import zmq

from corral.auth import api_token
from corral.cli.up import daemon_commands, router_credential_path
from corral.wire.credentials import node_sign_key
from corral.wire.curve import server_keys
from corral.wire.routercred import (ENV_VAR, RouterCredential, credential_path, feed_client_keys, feed_key,
                                    load_credential, parse_credential, router_key_only, save_credential)

KEY = bytes(range(32))


def test_the_credential_holds_none_of_the_clusters_other_secrets():
    cred = RouterCredential.of_cluster(KEY)
    held = {cred.feed_key, cred.client_keys()[1], cred.server_public}
    others = {KEY, server_keys(KEY)[1], api_token(KEY).encode(), node_sign_key(KEY, "node-1", cred.client_keys()[0]),
              hmac.new(KEY, b"", hashlib.sha256).digest()}
    assert not held & others
    assert cred.server_public == server_keys(KEY)[0]   # the servers' public key, which pins them
    assert RouterCredential.of_cluster(KEY) == cred and RouterCredential.of_cluster(KEY[::-1]) != cred


def test_the_client_key_pair_is_a_curve_pair_derived_from_the_feed_key():
    public, secret = feed_client_keys(feed_key(KEY))
    assert zmq.curve_public(secret) == public
    assert feed_client_keys(feed_key(KEY[::-1]))[0] != public


def test_the_feeds_admit_the_routers_key_and_no_other():
    admits = router_key_only(KEY)
    assert admits(RouterCredential.of_cluster(KEY).client_keys()[0])
    assert not admits(zmq.curve_keypair()[0])
    assert not admits(RouterCredential.of_cluster(KEY[::-1]).client_keys()[0])


def test_the_text_is_read_back_as_the_same_credential():
    cred = RouterCredential.of_cluster(KEY)
    assert parse_credential(cred.text().encode(), "f") == cred


@pytest.mark.parametrize("raw", [
    KEY.hex().encode() + b"\n",                                     # the cluster key's file
    b"{}", b"[]", b"not json",
    json.dumps({"kind": "corral router credential v1", "feed_key": "ab", "server_public": "x" * 40}).encode(),
    json.dumps({"kind": "corral router credential v1", "feed_key": "00" * 32, "server_public": "~" * 40}).encode(),
    json.dumps({"kind": "something else", "feed_key": "00" * 32, "server_public": "0" * 40}).encode(),
], ids=["a cluster key", "empty", "a list", "not json", "a short key", "not z85", "another kind"])
def test_a_file_that_is_not_a_credential_is_one_sentence_naming_it(raw):
    with pytest.raises(ValueError, match=r"^router credential /etc/x is not one \(make it again with "
                                         r"`corral router-credential`; a cluster key is not a router credential\)$"):
        parse_credential(raw, "/etc/x")


def test_saved_0600_never_over_another_and_loaded_back(tmp_path):
    path = tmp_path / "router.credential"
    cred = RouterCredential.of_cluster(KEY)
    save_credential(path, cred)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credential(path) == cred
    with pytest.raises(FileExistsError, match="already exists; remove it first"):
        save_credential(path, RouterCredential.of_cluster(KEY[::-1]))
    assert load_credential(path) == cred
    os.chmod(path, 0o644)
    load_credential(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600   # tightened by its owner


def test_a_missing_folder_or_huge_file_is_one_sentence(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; make it on a reconciler's host with "
                                                r"`corral router-credential --output"):
        load_credential(tmp_path / "none")
    with pytest.raises(ValueError, match="is a directory"):
        load_credential(tmp_path)
    (tmp_path / "big").write_bytes(b" " * 5000)
    with pytest.raises(ValueError, match="larger than 4096 bytes"):
        load_credential(tmp_path / "big")


def test_the_path_comes_from_the_flag_then_the_environment_which_is_emptied():
    env = {ENV_VAR: "/from/env"}
    assert credential_path("/given", env) == "/given" and env == {}
    env = {ENV_VAR: "/from/env"}
    assert credential_path(None, env) == "/from/env" and env == {}
    assert credential_path(None, {}) == "/etc/corral/router.credential"


def test_corral_ups_router_gets_its_credential_and_never_the_key():
    args = argparse.Namespace(settings=None, reconcilers=2, nodes=1, base_port=7070, router_port=None)
    (env,) = [env for name, _, env in daemon_commands(args, "/d", "/d/secret", "sqlite:///x") if name == "router"]
    assert env == {ENV_VAR: router_credential_path("/d")}
