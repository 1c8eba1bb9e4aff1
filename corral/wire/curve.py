"""The bus's CurveZMQ keys, derived from the cluster key: no key file of their own.

Every reconciler's ROUTER (agents connect) and route feed XPUB (routers connect) is a
CURVE server whose secret key is ``HMAC-SHA256(cluster key, SERVER_LABEL)``; its public
key follows from it. Whoever holds the cluster key (every agent, router and reconciler)
therefore knows the servers' public key, and nobody else can complete the handshake:
a CURVE client must name the server's public key, and the server proves it holds the
matching secret one. Each client socket uses a fresh keypair of its own (forward
secrecy per connection). The HMAC envelopes inside stay as they are: encryption hides
the bytes, the signature and replay window still decide what is accepted.

``bus_encryption``: ``required`` (every bus socket is CURVE; a cleartext peer cannot
connect) or ``off`` (cleartext, what 0.1.0 speaks). Both ends must agree.
"""
import hashlib
import hmac

from eventlet.green import zmq

Z85 = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
SERVER_LABEL = b"corral bus curve server v1"
MODES = ("required", "off")


def z85(data: bytes) -> bytes:
    """ZeroMQ's Z85 text of ``data`` (a multiple of 4 bytes long), as CurveZMQ keys are written. Pure."""
    out = bytearray()
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i:i + 4], "big")
        out += bytes(Z85[value // 85 ** k % 85] for k in range(4, -1, -1))
    return bytes(out)


def z85_decode(text: bytes) -> bytes:
    """The bytes whose Z85 text is ``text`` (a multiple of 5 characters); ValueError on any other
    character or length. Pure."""
    if len(text) % 5:
        raise ValueError("Z85 text must be a multiple of 5 characters long")
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for ch in text[i:i + 5]:
            digit = Z85.find(bytes([ch]))
            if digit < 0:
                raise ValueError(f"{chr(ch)!r} is not a Z85 character")
            value = value * 85 + digit
        if value >= 1 << 32:
            raise ValueError("Z85 text out of range")
        out += value.to_bytes(4, "big")
    return bytes(out)


def server_keys(key: bytes) -> tuple[bytes, bytes]:
    """The servers' CurveZMQ ``(public, secret)``, z85-encoded, derived from the cluster ``key``. Pure."""
    secret = z85(hmac.new(key, SERVER_LABEL, hashlib.sha256).digest())
    return zmq.curve_public(secret), secret


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`; else ValueError naming it."""
    if mode not in MODES:
        raise ValueError(f"bus_encryption must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def server_secret(key: bytes, mode: str) -> bytes | None:
    """What a bound bus socket takes as ``curve_secret``: the derived secret key, or None when ``mode`` is off."""
    return server_keys(key)[1] if check_mode(mode) == "required" else None


def server_public(key: bytes, mode: str) -> bytes | None:
    """What a connecting bus socket takes as ``curve_server_public``: None when ``mode`` is off."""
    return server_keys(key)[0] if check_mode(mode) == "required" else None


def as_client(sock, key: bytes):
    """Make the ZeroMQ socket ``sock`` (not yet connected) a CURVE client of the reconcilers, with a
    fresh keypair; returns it. For tools and tests that speak to an encrypted bus with a raw socket."""
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.curve_serverkey = server_keys(key)[0]
    return sock
