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


@pytest.mark.parametrize("role, mode", [("reconciler", "required"), ("agent", "required"), ("router", "required"),
                                        ("reconciler", "off"), ("agent", "off"), ("router", "off")])
def test_units_say_the_mode_whatever_the_daemons_default(role, mode):
    o = units.Options(role=role, exe="/opt/corral/bin/corral", name="x", reconcilers=("tcp://10.0.0.1:7071",),
                      bus_encryption=mode)
    argv = units.command(o)
    assert argv[argv.index("--bus-encryption") + 1] == mode


def test_a_builders_unit_has_no_bus():
    o = units.Options(role="builder", exe="/opt/corral/bin/corral", name="x")
    assert "--bus-encryption" not in units.command(o)


@pytest.mark.parametrize("verb", [["reconciler"], ["agent", "--name", "n", "--reconciler", "tcp://x:1", "--data-dir", "d"],
                                  ["router", "--reconciler", "tcp://x:1"]])
def test_a_bare_daemons_bus_is_encrypted_unless_told_otherwise(verb):
    from corral.cli.main import parser
    assert parser().parse_args(verb).bus_encryption == "required"


def test_corral_up_encrypts_every_bus_daemon():
    args = argparse.Namespace(settings=None, reconcilers=2, nodes=2, base_port=7070, router_port=None)
    for name, argv, _ in daemon_commands(args, "/tmp/data", "/tmp/data/secret", "sqlite:///x"):
        assert ("--bus-encryption" in argv) is (name != "builder"), name


def test_z85_is_zeromqs():
    for data in (bytes(32), bytes(range(32)), b"\xff" * 32, KEY[::-1]):
        assert z85(data) == zmq_z85.encode(data)
