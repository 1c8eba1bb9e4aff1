"""TLS for the router: a certificate and key per host, picked by the name the client asks
for in its handshake (SNI).

``--tls HOST=CERT,KEY`` (repeatable): HOST is exact (``shop.example.com``) or a
wildcard (``*.example.com``, one label, as certificates mean it). A client that
names no host, or one with no certificate here, gets the first one given (its
handshake fails with a name mismatch, as with any server). The Host of the
request is routed as on plain HTTP; its ``X-Forwarded-Proto`` is ``https``.
"""
from corral import tls
from corral.hostnames import normalize_host


def parse_tls_option(text):
    """``(host, cert path, key path)`` of one ``--tls HOST=CERT,KEY``; ValueError naming what is wrong."""
    host, eq, files = text.partition("=")
    cert, comma, key = files.partition(",")
    name = normalize_host(host)
    if not eq or not comma or not cert or not key or name is None:
        raise ValueError(f"--tls {text!r}: expected HOST=CERT_FILE,KEY_FILE (HOST exact or *.domain)")
    return name, cert, key


def certificate_for(contexts, server_name):
    """The context of the certificate for ``server_name`` (exact, else the wildcard one label
    up), else None. ``contexts``: ``{host: SSLContext}``. Pure."""
    if not server_name:
        return None
    name = server_name.lower().rstrip(".")
    if name in contexts:
        return contexts[name]
    _, dot, parent = name.partition(".")
    return contexts.get("*." + parent) if dot else None


def server_context(certs):
    """The listening SSLContext for ``certs`` (``[(host, cert path, key path)]``): TLS 1.2 or
    newer, each host's certificate chosen by SNI. Raises ValueError naming a file that
    cannot be loaded."""
    contexts = {host: tls.server_context(cert, key, f"--tls {host}") for host, cert, key in certs}
    default = contexts[certs[0][0]]

    def choose(sslobj, server_name, _ctx):
        chosen = certificate_for(contexts, server_name)
        if chosen is not None:
            sslobj.context = chosen
    default.sni_callback = choose
    return default
