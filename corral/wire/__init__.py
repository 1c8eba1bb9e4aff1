"""The cluster bus: signed envelopes over ZeroMQ. The only package that imports zmq.

Two layers:

- :mod:`corral.wire.envelope` -- pure: ``seal()`` makes the signed bytes of a
  message, ``Opener.open()`` verifies them (HMAC-SHA256 with the cluster key,
  replay window, seen-nonce check, JSON Schema of the body by message type)
  and raises :class:`Rejected` with a reason otherwise.
- :mod:`corral.wire.bus` -- green ZeroMQ sockets: ``BusServer`` (ROUTER, one per
  reconciler) and ``BusClient`` (one DEALER per reconciler, in each agent).
  A rejected message is dropped and counted; the receiver keeps working.

Message types and their body schemas (``schemas/wire/<type>.schema.json``):

- ``report``: agent -> reconcilers, every heartbeat and at once on change;
- ``assign``: leader -> agent, the node's whole desired instance list, with the
  leader's epoch on the envelope;
- ``routes``: each reconciler -> routers (``BusPublisher`` XPUB, ``BusSubscriber``
  SUB): the route table as a snapshot, sequenced deltas, and a tick a second.
"""
