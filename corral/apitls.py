"""HTTPS for the reconciler's API: the server's certificate, and the client's pinned CA.

A reconciler given ``--tls-cert FILE --tls-key FILE`` serves its API over TLS
1.2 or newer. The handshake is done in the connection's own green thread, at
its first read (eventlet's accepted TLS sockets defer it), so it falls under
the API's head deadline (:mod:`corral.httpserve`): a client that stalls its
handshake holds no more than a slow head does. A reconciler listening beyond
loopback without a certificate says once that its API, tokens included,
travels in the clear.

The CLI trusts the system's CAs for ``https://`` URLs, or only the CA file
named by ``CORRAL_CA`` or the client config's ``ca`` (pinned: a certificate
that CA did not sign is refused, whatever the system trusts).
"""
import ipaddress
import ssl

from corral import tls


def server_context(cert, key):
    """The API's listening SSLContext of ``cert`` and ``key`` (paths), green: TLS 1.2 or newer. ValueError
    names the files when they cannot be loaded."""
    from eventlet.green import ssl as green_ssl
    return tls.server_context(cert, key, "--tls-cert and --tls-key", green_ssl.SSLContext)


def check_pair(cert, key):
    """The sentence refusing ``--tls-cert`` without ``--tls-key`` or the other way round, else None. Pure."""
    if bool(cert) != bool(key):
        given, missing = ("--tls-cert", "--tls-key") if cert else ("--tls-key", "--tls-cert")
        return f"{given} needs {missing} too: the API serves HTTPS with both, plain HTTP with neither"
    return None


def beyond_loopback(host):
    """Whether an API listening on ``host`` is reachable from other machines (any address but a
    loopback one; a name counts as reachable). Pure."""
    if host in ("", "localhost"):
        return host == ""
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True


def client_context(ca):
    """The SSLContext the CLI connects with: the system's CAs, or only ``ca`` (a file) when given."""
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
