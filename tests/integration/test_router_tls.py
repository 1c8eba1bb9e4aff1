"""HTTPS at the router: a certificate per host chosen by SNI (exact, and a wildcard), the
request routed by its Host as on plain HTTP and marked X-Forwarded-Proto: https; a
certificate that cannot be loaded is refused at start with one sentence."""
import json
import socket
import ssl
import subprocess
import sys

import pytest

from tests.routerkit import ROOT, backend, route, running_router


def certificate(tmp_path, name):
    """A self-signed certificate and key for ``name``: their paths."""
    stem = tmp_path / name.replace("*", "star")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                    "-keyout", f"{stem}.key", "-out", f"{stem}.crt"], check=True, capture_output=True)
    return f"{stem}.crt", f"{stem}.key"


def https_get(port, sni, host, path="/headers"):
    """``(certificate subject CN, answer bytes)`` of one GET over TLS with SNI ``sni``."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                          capture_output=True).stdout.decode()
    return text.split("CN", 1)[1].strip(" =\n"), out


@pytest.fixture(scope="module")
def tls_router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    a_cert, a_key = certificate(tmp, "a.test")
    b_cert, b_key = certificate(tmp, "*.b.test")
    from tests.support import free_port
    tls_port = free_port()
    with backend("app") as port:
        with running_router(tmp, routes=[route("a.test", [port]), route("x.b.test", [port], app="b")], args=[
                "--tls", f"a.test={a_cert},{a_key}", "--tls", f"*.b.test={b_cert},{b_key}",
                "--tls-listen", f"127.0.0.1:{tls_port}"]) as router:
            router.tls_port = tls_port
            yield router


def test_each_host_gets_its_own_certificate_and_the_app_learns_it_was_https(tls_router):
    cn, out = https_get(tls_router.tls_port, "a.test", "a.test")
    assert cn == "a.test" and out.startswith(b"HTTP/1.1 200")
    seen = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-host"] == "a.test"
    cn, out = https_get(tls_router.tls_port, "x.b.test", "x.b.test", "/")
    assert cn == "*.b.test" and out.endswith(b"hello from app")


def test_an_unknown_name_gets_the_first_certificate_and_the_routers_404(tls_router):
    cn, out = https_get(tls_router.tls_port, "nobody.test", "nobody.test", "/")
    assert cn == "a.test" and out.startswith(b"HTTP/1.1 404")


def test_a_certificate_that_cannot_be_loaded_is_one_sentence(tmp_path):
    (tmp_path / "bad.crt").write_text("not a certificate")
    r = subprocess.run([sys.executable, "-m", "corral", "router", "--static", "/dev/null",
                        "--tls", f"a.test={tmp_path / 'bad.crt'},{tmp_path / 'bad.crt'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error: --tls a.test: cannot load") and len(r.stderr.strip().splitlines()) == 1
