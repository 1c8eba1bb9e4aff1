"""ZeroMQ's authentication (ZAP, RFC 27) for the bus's CURVE server: which client keys may connect.

libzmq asks the ZAP handler of the server socket's context, once per connection during the
CurveZMQ handshake, whether the client's public key may connect; the answer's User-Id is then
stamped on every message of that connection (``frame.get("User-Id")``). Our handler is a green
REP socket on ``inproc://zeromq.zap.01`` in the server's own context (a thread would fight the
eventlet hub; docs/STACK.md). It refuses the keys ``admits(public key)`` says no to (a revoked
node's) and stamps every other connection with its client's public key in z85: the server then
looks up, message by message, whose key that is (:meth:`corral.wire.bus.BusServer`), so that a
node that joined, or was revoked, after its connection was made is known as such at once.
"""
import logging

import eventlet
from eventlet.green import zmq

from corral.wire.curve import z85

log = logging.getLogger(__name__)

ENDPOINT = "inproc://zeromq.zap.01"
POLL_MS = 200


REFUSED = b"key refused"


def reply(request, admits):
    """The ZAP reply frames to ``request`` (version, id, domain, address, identity, mechanism,
    credentials...): 200 with the client's z85 public key as User-Id when ``admits`` it, else 400.
    Pure but for ``admits``."""
    if len(request) < 6 or request[0] != b"1.0":
        return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
    request_id, mechanism = request[1], request[5]
    if mechanism != b"CURVE" or len(request) != 7 or len(request[6]) != 32:
        return [b"1.0", request_id, b"400", b"only CURVE clients", b"", b""]
    key = z85(request[6])
    try:
        admitted = admits(key)
    except Exception:   # the store could not be read: refuse this handshake, the client tries again
        log.exception("bus: could not decide on a client key")
        admitted = False
    if not admitted:
        return [b"1.0", request_id, b"400", REFUSED, b"", b""]
    return [b"1.0", request_id, b"200", b"OK", key, b""]


class ZapHandler:
    """Answers ZAP requests of the context ``ctx`` with ``admits(public_key_z85) -> bool`` (see the
    module docstring) until :meth:`close`. Counts ``refused`` handshakes."""

    def __init__(self, ctx, admits):
        self._admits = admits
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
        """The reply to ``request`` (:func:`reply`), a refused key counted."""
        frames = reply(request, self._admits)
        if frames[3] == REFUSED:
            self.refused += 1
        return frames

    def close(self):
        """Stop answering (before the context is terminated)."""
        self._closing = True
        self._thread.wait()
        self._sock.close(linger=0)
