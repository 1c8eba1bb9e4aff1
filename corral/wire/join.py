"""A node's join: a join token exchanged, over the encrypted bus, for the node's own credential.

The node makes its CurveZMQ key pair, connects to a reconciler's bus as a CURVE client of the
servers' public key the token carries (so it speaks only to the real reconcilers, and nobody on
the wire reads the token), and sends ``join {"name", "token"}``. The reconciler spends the token
and records the connection's public key as the node's (:meth:`BusServer._join`), and answers
``joined {"name", "sign_key"}`` or ``refused SENTENCE``. The secret key never leaves the node.

Reconcilers are tried in turn: one that does not answer within ``timeout`` seconds (down, or
not encrypted: the handshake never completes) gives way to the next; a refusal is final.
"""
import json
import time

import eventlet
from eventlet.green import zmq

from corral.wire.bus import JOIN_PREFIX
from corral.wire.credentials import NodeCredential, parse_join_token

POLL_MS = 100


class JoinRefused(ValueError):
    """The join did not give a credential; the message is one sentence."""


def join(endpoints, token_text, name, timeout=10.0) -> NodeCredential:
    """Exchange the join token ``token_text`` for node ``name``'s credential at the first of the
    reconcilers' bus ``endpoints`` that answers (see the module docstring); JoinRefused with the
    reconciler's sentence, or saying that none answered."""
    token = parse_join_token(token_text)
    public, secret = zmq.curve_keypair()
    request = JOIN_PREFIX + json.dumps({"name": name, "token": token_text.strip()}).encode("utf-8")
    ctx = zmq.Context()
    try:
        for endpoint in endpoints:
            answer = _ask(ctx, endpoint, (public, secret), token.server_public, request, timeout)
            if answer is None:
                continue
            if answer.startswith(b"joined "):
                body = json.loads(answer[len(b"joined "):])
                return NodeCredential(name=body["name"], public=public, secret=secret,
                                      server_public=token.server_public, sign_key=bytes.fromhex(body["sign_key"]))
            raise JoinRefused(f"the reconciler at {endpoint} refused the join: "
                              f"{answer.partition(b' ')[2].decode('utf-8', 'replace')}")
    finally:
        ctx.term()
    raise JoinRefused(f"no reconciler answered the join within {timeout:g}s at {', '.join(endpoints)} "
                      "(are they up, with --bus-encryption required?)")


def _ask(ctx, endpoint, keypair, server_public, request, timeout):
    """The answer of the reconciler at ``endpoint`` to ``request``, None when none came in time."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, POLL_MS)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.curve_publickey, sock.curve_secretkey = keypair
    sock.curve_serverkey = server_public
    deadline = time.monotonic() + timeout
    try:
        sock.connect(endpoint)
        sent = False
        while time.monotonic() < deadline:
            if not sent:   # IMMEDIATE: it goes once the handshake is done
                try:
                    sock.send(request, flags=zmq.NOBLOCK)
                    sent = True
                except zmq.Again:
                    eventlet.sleep(POLL_MS / 1000)
                    continue
            try:
                return sock.recv()
            except zmq.Again:
                continue
        return None
    finally:
        sock.close(linger=0)
