"""corral/wire/curve.py: the servers' CurveZMQ keys derived from the cluster key, and which
command lines turn bus encryption on."""
import argparse

import pytest
import zmq
from zmq.utils import z85 as zmq_z85

from corral import units
from corral.cli.up import daemon_commands
from corral.wire.curve import server_keys, z85, server_public, server_secret

KEY, OTHER = bytes(range(32)), bytes(range(1, 33))


def test_the_server_keys_follow_from_the_cluster_key_alone():
    public, secret = server_keys(KEY)
    assert server_keys(KEY) == (public, secret) and len(public) == len(secret) == 40
    assert zmq.curve_public(secret) == public
    assert server_keys(OTHER)[0] != public


@pytest.mark.parametrize("mode, has_keys", [("required", True), ("off", False)])
def test_off_gives_no_keys(mode, has_keys):
    assert (server_secret(KEY, mode) is not None, server_public(KEY, mode) is not None) == (has_keys, has_keys)


def test_an_unknown_mode_is_one_sentence_naming_it():
    with pytest.raises(ValueError, match="bus_encryption must be one of required, off, not 'on'"):
        server_secret(KEY, "on")


@pytest.mark.parametrize("role, mode, flagged", [
    ("reconciler", "required", True), ("agent", "required", True), ("router", "required", True),
    ("builder", "required", False), ("reconciler", "off", False), ("agent", "off", False)])
def test_units_pass_required_and_leave_off_to_the_daemons_default(role, mode, flagged):
    o = units.Options(role=role, exe="/opt/corral/bin/corral", name="x", reconcilers=("tcp://10.0.0.1:7071",),
                      bus_encryption=mode)
    argv = units.command(o)
    assert (argv[argv.index("--bus-encryption") + 1] == "required" if flagged else "--bus-encryption" not in argv)


def test_corral_up_encrypts_every_bus_daemon():
    args = argparse.Namespace(settings=None, reconcilers=2, nodes=2, base_port=7070, router_port=None)
    for name, argv, _ in daemon_commands(args, "/tmp/data", "/tmp/data/secret", "sqlite:///x"):
        assert ("--bus-encryption" in argv) is (name != "builder"), name


def test_z85_is_zeromqs():
    for data in (bytes(32), bytes(range(32)), b"\xff" * 32, KEY[::-1]):
        assert z85(data) == zmq_z85.encode(data)
