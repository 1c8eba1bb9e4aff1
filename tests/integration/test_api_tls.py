"""The API over HTTPS: a real reconciler given --tls-cert/--tls-key, the CLI pinning its CA.

Certificates are made with the openssl command, as an operator would: one
signed for 127.0.0.1 (the reconciler's), another that no one here trusts.
"""
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

from corral.wire.keys import new_key_file
from tests.support import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def self_signed(folder, name):
    """``(certificate, key)`` paths of a self-signed certificate for 127.0.0.1 (it is its own CA)."""
    cert, key = os.path.join(folder, f"{name}.pem"), os.path.join(folder, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key,
                    "-out", cert, "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def cli(*args, ca=None, port, token, home):
    env = dict(os.environ, CORRAL_API=f"https://127.0.0.1:{port}", CORRAL_TOKEN=token, XDG_CONFIG_HOME=home)
    env.pop("CORRAL_CA", None)
    if ca:
        env["CORRAL_CA"] = ca
    return subprocess.run([sys.executable, "-m", "corral", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)


@pytest.fixture
def tls_reconciler(tmp_path):
    """A reconciler serving its API over HTTPS; yields ``(port, admin token, CA file)``."""
    from corral.auth import api_token
    from corral.wire.keys import read_key
    cert, key = self_signed(str(tmp_path), "reconciler")
    key_file = str(tmp_path / "cluster.key")
    new_key_file(key_file)
    port = free_port()
    log = open(tmp_path / "reconciler.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "reconciler", "--api", f"127.0.0.1:{port}",
         "--bus", f"tcp://127.0.0.1:{free_port()}", "--routes", f"tcp://127.0.0.1:{free_port()}",
         "--secret-file", key_file, "--name", "r-tls", "--tls-cert", cert, "--tls-key", key],
        stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env=dict(os.environ, CORRAL_STORE=f"sqlite:///{tmp_path}/c.db"))
    log.close()

    def serving():
        assert proc.poll() is None, (tmp_path / "reconciler.log").read_text()[-2000:]
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for("the API's port", serving, timeout=30)
    yield port, api_token(read_key(key_file)), cert
    proc.terminate()
    proc.wait(timeout=30)


def test_the_cli_reaches_an_https_api_through_the_ca_it_pins_and_refuses_any_other(tls_reconciler, tmp_path):
    port, token, ca = tls_reconciler
    home = str(tmp_path / "home")
    ok = wait_for("an answer over HTTPS", lambda: (r := cli("get", "apps", "-o", "json", ca=ca, port=port, token=token,
                                                            home=home)).returncode == 0 and r, timeout=30)
    assert ok.stdout.strip() == "[]"   # the API's own answer: no apps yet
    stranger, _ = self_signed(str(tmp_path), "stranger")
    refused = cli("get", "apps", ca=stranger, port=port, token=token, home=home)
    assert refused.returncode != 0 and "certificate verify failed" in refused.stderr, refused.stderr
    system = cli("get", "apps", port=port, token=token, home=home)   # no pin: the system's CAs know it not
    assert system.returncode != 0 and "certificate verify failed" in system.stderr, system.stderr


def test_a_plain_http_client_gets_no_answer_and_a_stalled_handshake_is_cut(tls_reconciler):
    port, _, ca = tls_reconciler
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not s.recv(4096).startswith(b"HTTP/1.1 200"), "a plain HTTP request was answered"
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:   # connects, never says hello
        assert s.recv(1) == b"", "the server sent something to a client that never started its handshake"
    assert time.monotonic() - began < 25, "a stalled handshake held its connection past the head deadline"
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:   # and the server still serves
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_certificate_without_its_key_or_a_file_that_does_not_load_is_one_sentence(tmp_path):
    cert, _ = self_signed(str(tmp_path), "lone")
    env = dict(os.environ, CORRAL_STORE=f"sqlite:///{tmp_path}/c.db")
    half = subprocess.run([sys.executable, "-m", "corral", "reconciler", "--tls-cert", cert], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)
    assert half.returncode == 1
    assert half.stderr.strip().splitlines()[-1] == ("error: --tls-cert needs --tls-key too: the API serves HTTPS "
                                                    "with both, plain HTTP with neither")
    key_file = str(tmp_path / "cluster.key")
    new_key_file(key_file)
    wrong = subprocess.run([sys.executable, "-m", "corral", "reconciler", "--api", f"127.0.0.1:{free_port()}",
                            "--secret-file", key_file, "--tls-cert", cert, "--tls-key", cert],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert wrong.returncode == 1 and f"--tls-cert and --tls-key: cannot load {cert} and {cert}" in wrong.stderr
