"""ZeroMQ's authentication (ZAP, RFC 27) for the bus's CURVE server: who each client key is.

libzmq asks the ZAP handler of the server socket's context, once per connection during the
CurveZMQ handshake, whether the client's public key may connect; the answer's User-Id is then
stamped on every message of that connection (``frame.get("User-Id")``), so the server knows
which key spoke without trusting anything the message says. Our handler is a green REP socket
on ``inproc://zeromq.zap.01`` in the server's own context (a thread would fight the eventlet
hub; docs/STACK.md), answering from ``user_id(client public key)``:

- a node's recorded key: its name (messages must then name it as their sender);
- a key of no node: ``ANONYMOUS`` + the key in z85, so that the server can let it join or hear
  what a cluster key signed (a node that has no key of its own yet);
- None: refused, the handshake fails (a revoked node's key).
"""
import logging

import eventlet
from eventlet.green import zmq

from corral.wire.curve import z85

log = logging.getLogger(__name__)

ENDPOINT = "inproc://zeromq.zap.01"
ANONYMOUS = "~"    # no node name starts with it (corral/wire/credentials.py: NODE_NAME)
POLL_MS = 200


class ZapHandler:
    """Answers ZAP requests of the context ``ctx`` with ``user_id(public_key_z85) -> str | None``
    (see the module docstring) until :meth:`close`. Counts ``refused`` handshakes."""

    def __init__(self, ctx, user_id):
        self._user_id = user_id
        self._sock = ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVTIMEO, POLL_MS)
        self._sock.bind(ENDPOINT)
        self._closing = False
        self.refused = 0
        self._thread = eventlet.spawn(self._serve)

    def _serve(self):
        while not self._closing:
            try:
                request = self._sock.recv_multipart()
            except zmq.Again:
                continue
            except zmq.ZMQError:
                if self._closing:
                    return
                raise
            self._sock.send_multipart(self.answer(request))

    def answer(self, request):
        """The ZAP reply frames to ``request`` (version, id, domain, address, identity, mechanism,
        credentials...)."""
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
        request_id, mechanism = request[1], request[5]
        if mechanism != b"CURVE" or len(request) != 7 or len(request[6]) != 32:
            return [b"1.0", request_id, b"400", b"only CURVE clients", b"", b""]
        try:
            user = self._user_id(z85(request[6]))
        except Exception:   # the store could not be read: refuse this handshake, the client tries again
            log.exception("bus: could not decide on a client key")
            user = None
        if user is None:
            self.refused += 1
            return [b"1.0", request_id, b"400", b"key refused", b"", b""]
        return [b"1.0", request_id, b"200", b"OK", user.encode("utf-8"), b""]

    def close(self):
        """Stop answering (before the context is terminated)."""
        self._closing = True
        self._thread.wait()
        self._sock.close(linger=0)
