"""Green ZeroMQ sockets that carry signed envelopes (see :mod:`corral.wire.envelope`).

::

    agent                                  reconciler
    BusClient --DEALER---(signed)--------> BusServer (ROUTER, bound)
              <------- send(node name) --

Choices, and why:

- Receive loops block in ``recv`` with ``RCVTIMEO`` and catch ``zmq.Again``
  (``Poller.poll`` froze the eventlet hub, docs/STACK.md); the timeout is also how a
  loop notices ``close()``.
- Every send is non-blocking. A message that cannot go at once (no peer, full
  queue) is dropped and counted: reports and assignments are level-triggered
  state, and the next heartbeat or loop carries a fresh one. ``IMMEDIATE=1`` on
  the DEALER keeps messages from queueing for a reconciler that is down.
- ``ROUTER_MANDATORY`` makes a send to a gone peer fail at once (False)
  instead of vanishing.
- ZMTP heartbeats (1 s, 3 s timeout) find a dead TCP peer, so a DEALER
  reconnects to a reconciler that came back at the same endpoint.
- Routing is learned from verified messages only. A DEALER does not choose
  its ZeroMQ identity (anyone on the network could claim a node's name and,
  with ``ROUTER_HANDOVER``, take its replies away); the ROUTER gives each
  connection a random routing id, and the server maps a node's name to the
  routing id of the connection its latest *verified* message came from. An
  unsigned socket can therefore never divert a node's commands, and a
  restarted agent is found again by its first report.
- A verified message is not enough when it may be a replay (issue 14: a
  peer replayed node-1's ping meant for r1 to r2, and r2's messages for
  node-1 went to it). An agent names the reconciler each message is for
  (``to``, once it has heard from it on that connection); a server refuses
  one named for another (``recipient``) and one sealed before it started
  (``expired``: its nonce memory is new, not its window). A message that
  names no recipient (an agent that has heard nothing yet) moves a node's
  name to its connection only when the connection the name is on is gone
  (a ping to it fails); else the name stays, and the new connection gets a
  ping, which tells its agent this reconciler's name.
- CurveZMQ encryption when keys are given (``curve_secret`` on the server,
  ``curve_server_public`` on the client; the daemons derive them from the cluster key,
  :mod:`corral.wire.curve`, under ``--bus-encryption required``); HMAC signing is always on.
- Each node its own key (:mod:`corral.wire.credentials`), when the server is given
  ``identities``: a ZAP handler (:mod:`corral.wire.zap`) names the node whose CurveZMQ key
  each connection authenticated with, and a message on it is opened with that node's
  signing key and must name that node as its sender; a name that holds a key of its own
  is refused from any other connection. So a node's name is bound to its key: node-1's
  key can neither speak as node-2 nor draw node-2's messages to itself (a replayed message
  cannot move a name to another connection), and a revoked key speaks no more. Refusals
  are counted by reason (``impersonation``, ``revoked``) and logged.
"""
import collections
import contextlib
import json
import logging
import math
import time

import eventlet
from eventlet.green import zmq

from corral.wire import zap
from corral.wire.envelope import Opener, Rejected, seal

log = logging.getLogger(__name__)

POLL_MS = 200            # how often a receive loop looks up to check for close()
RECONNECT_MS = 100       # first reconnect delay of a DEALER
RECONNECT_MAX_MS = 1000  # reconnect delay cap
HEARTBEAT_MS = 1000      # ZMTP ping interval
HEARTBEAT_TIMEOUT_MS = 3000
SNDHWM = 1000            # per peer: more than this many unsent messages means the peer is stuck
RCVHWM = 10000           # many agents report into one ROUTER
YIELD_EVERY = 64         # sends between eventlet.sleep(0) in loops over many peers
JOIN_PREFIX = b"join "   # an anonymous connection's join request (corral/wire/join.py), not an envelope
MAX_JOIN_BYTES = 1024
JOINS_A_SECOND = 10      # join requests a server takes to its store in a second; more are refused at once
LOG_EVERY = 10.0         # seconds between two log lines of one refusal of one peer


def _common_options(sock):
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, POLL_MS)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, RCVHWM)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, 8 * 1024 * 1024 + 1024)  # envelope limit plus routing frames


def shared_context(max_sockets=None):
    """A new green ZeroMQ context for many :class:`BusClient` in one process to share
    (``context=``); its owner terminates it once every client is closed. ``max_sockets`` raises
    ZeroMQ's limit of 1,023 sockets a context (one per client and reconciler)."""
    ctx = zmq.Context()
    if max_sockets is not None:
        ctx.set(zmq.MAX_SOCKETS, max_sockets)
    return ctx


def curve_keypair():
    """Return a new CurveZMQ ``(public, secret)`` pair, both z85-encoded bytes."""
    return zmq.curve_keypair()


class _Endpoint:
    """What BusServer and BusClient share: a receive loop, counters, close."""

    def __init__(self, key, sender, handler, window, clock, context=None, not_before=None):
        if not isinstance(sender, str) or not sender:
            raise ValueError(f"bus: sender must be a non-empty string, not {sender!r}")
        self._key = key
        self.sender = sender
        self._handler = handler
        self._clock = clock
        self._opener = Opener(key, window, not_before=-math.inf if not_before is None else not_before)
        self._own_ctx = context is None  # a context passed in is its owner's to terminate
        self._ctx = zmq.Context() if context is None else context
        self._threads = []
        self._closing = False
        self._copy = True   # False where frames must keep their metadata (User-Id)
        self.sent = 0
        self.dropped = 0
        self.extra_rejected = collections.Counter()

    def _seal(self, type, body, epoch, attachment=None, to=None):
        return seal(self._key, type, self.sender, epoch, body, now=self._clock(), attachment=attachment, to=to)

    def _receive_loop(self, sock, name):
        while not self._closing:
            try:
                frames = sock.recv_multipart(copy=self._copy)
            except zmq.Again:
                continue
            except zmq.ZMQError as e:
                if self._closing or e.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                log.warning("bus %s: receive failed on %s: %s", self.sender, name, e)
                eventlet.sleep(POLL_MS / 1000)
                continue
            try:
                self._on_frames(frames, name)
            except Exception:
                log.exception("bus %s: message handler failed on %s", self.sender, name)
            eventlet.sleep(0)

    def _open(self, data, origin, key=None):
        """Return the message in ``data`` (signed with ``key``, default this end's), or None (logged,
        counted) when it is rejected."""
        try:
            return self._opener.open(data, self._clock(), key)
        except Rejected as e:
            log.debug("bus %s: dropped a message from %s: %s", self.sender, origin, e)
            return None

    def stats(self) -> dict:
        """Return counters: ``accepted``, ``rejected`` (by reason), ``sent``, ``dropped``."""
        rejected = collections.Counter(self._opener.rejected)
        rejected.update(self.extra_rejected)
        return {"accepted": self._opener.accepted, "rejected": dict(rejected),
                "sent": self.sent, "dropped": self.dropped}

    def _bind(self, kind, endpoint, curve_secret, **options):
        """A socket of ``kind`` with the common options and ``options``, bound at ``endpoint``
        (OSError naming it when it cannot be; this endpoint's context is then terminated)."""
        sock = self._ctx.socket(kind)
        _common_options(sock)
        for option, value in options.items():
            sock.setsockopt(getattr(zmq, option), value)
        if curve_secret is not None:
            sock.curve_secretkey = curve_secret
            sock.curve_server = True
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            sock.close(linger=0)
            self._close_extra()
            self._ctx.term()
            raise OSError(f"bus: cannot bind {endpoint}: {e}") from None
        return sock

    def _close_extra(self):
        """Close what a subclass holds open in the context besides its sockets (before it is terminated)."""

    def _close_sockets(self, sockets):
        self._closing = True
        current = eventlet.getcurrent()
        for gt in self._threads:
            if gt is not current:
                gt.wait()  # each loop looks up within POLL_MS
        self._threads = []
        for sock in sockets:
            sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()


class _Bound(_Endpoint):
    """What BusServer and BusPublisher share: one bound socket (``_sock``) and its receive loop, and
    the ZAP handler (``_zap``) that decides which CURVE client keys may connect, when there is one."""

    _zap = None

    def start(self):
        """Start receiving in a green thread; returns at once."""
        self._threads.append(eventlet.spawn(self._receive_loop, self._sock, self.endpoint))
        return self

    def stats(self) -> dict:
        """The counters of :meth:`_Endpoint.stats`, with handshakes refused by key (``key refused``)."""
        out = super().stats()
        if self._zap is not None and self._zap.refused:
            out["rejected"]["key refused"] = self._zap.refused
        return out

    def _close_extra(self):
        if self._zap is not None:
            self._zap.close()
            self._zap = None

    def close(self):
        """Stop receiving and answering handshakes, release the endpoint; safe to call twice."""
        if not self._closing:
            self._close_extra()
            self._close_sockets([self._sock])


class BusServer(_Bound):
    """The reconciler's end: a ROUTER bound at ``endpoint``.

    ``handler(peer: bytes, msg: Message)`` is called in the receive green
    thread for every accepted message; ``peer`` is what :meth:`send` takes to
    answer. ``endpoint`` may use port ``*``; :attr:`endpoint` is then the bound one.

    ``identities`` (with ``curve_secret`` only): the nodes' own keys, an object with
    ``admits(public_key) -> bool`` (the ZAP answer, :mod:`corral.wire.zap`; keys are z85 bytes),
    ``holder(public_key) -> (name, signing key or None) | None`` (the node a key is, its signing key
    None once revoked; None: no node's key), ``sign_key(name) -> bytes | None`` (a node's signing
    key while its key holds),
    ``refusal(name) -> str | None`` (why a message for ``name`` from a connection without a key of
    its own is refused: ``impersonation`` when the name holds a key, ``revoked``; else None) and
    ``join(name, token, public_key) -> (bool, dict | str)`` (a join request: the reply's body,
    or the sentence of its refusal). See the module docstring.
    """

    def __init__(self, endpoint: str, key: bytes, sender: str, handler, window: float = 30.0,
                 clock=time.time, *, curve_secret: bytes | None = None, identities=None):
        super().__init__(key, sender, handler, window, clock, not_before=clock())
        if identities is not None and curve_secret is None:
            raise ValueError("bus: nodes' own keys need an encrypted bus (curve_secret)")
        self._peers = {}   # node name (bytes) -> clock time of its last accepted message
        self._routes = {}  # node name (bytes) -> (routing id of the connection it last spoke on, its signing key)
        self._identities = identities
        self._zap = None if identities is None else zap.ZapHandler(self._ctx, identities.admits)
        self._copy = identities is None
        self._logged = {}  # (reason, peer) -> clock time of its last log line
        self._joins = collections.deque()   # clock times of the join requests answered within the last second
        self._sock = self._bind(zmq.ROUTER, endpoint, curve_secret, ROUTER_MANDATORY=1)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _on_frames(self, frames, name):
        if len(frames) != 2:
            self.extra_rejected["malformed"] += 1
            log.debug("bus %s: dropped a message of %d frames (expected identity + envelope)", self.sender, len(frames))
            return
        if self._identities is None:
            routing_id, data = frames
            key = self._key
            msg = self._open(data, routing_id)
        else:
            routing_id, data, key, msg = self._open_keyed(*frames)
        if msg is None:
            return
        if msg.to is not None and msg.to != self.sender:
            self.refuse("recipient", msg.sender, f"a message for {msg.to!r}")
            return
        peer = msg.sender.encode("utf-8")
        self._route(peer, routing_id, key, named=msg.to is not None)
        self._peers[peer] = self._clock()
        self._handler(peer, msg)

    def _route(self, peer, routing_id, key, named):
        """Send node ``peer``'s messages to the connection ``routing_id`` from now on, when its message
        there named this server, or the connection its name is on is gone; else (maybe a replay) ping
        the new connection, which tells an agent that started again whom to name (module docstring)."""
        current = self._routes.get(peer)
        if named or current is None or current[0] == routing_id or not self._ping(current[0], current[1]):
            self._routes[peer] = (routing_id, key)
        else:
            self._ping(routing_id, key)

    def _ping(self, routing_id, key):
        """Send a ping to the connection ``routing_id``; whether it went (False: the connection is gone)."""
        try:
            self._sock.send_multipart([routing_id, seal(key, "ping", self.sender, 0, {}, now=self._clock())],
                                      flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            if e.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            return e.errno == zmq.EAGAIN   # a full queue: the connection is there
        return True

    def _open_keyed(self, routing_frame, frame):
        """``(routing id, data, signing key, message or None)`` of a message on a bus of nodes' own
        keys: opened with the key of the node whose CurveZMQ key its connection authenticated with
        (the ZAP handler's User-Id), which it must name as its sender; or a join request, from a key
        of no node or again from the live key that joined (its answer was lost: the store answers
        it as the first time), answered here, no message; or, from a key of no node, one signed with
        the cluster key for a name that holds no key of its own."""
        routing_id, data = routing_frame.bytes, frame.bytes
        public_key = (frame.get("User-Id") or "").encode("ascii")
        holder = self._identities.holder(public_key) if public_key else None
        if data.startswith(JOIN_PREFIX) and public_key and (holder is None or holder[1] is not None):
            self._join(routing_id, data, public_key)
            return routing_id, data, None, None
        if holder is None:
            msg = self._open(data, routing_id)
            refusal = None if msg is None else self._identities.refusal(msg.sender)
            if refusal is not None:
                return routing_id, data, None, self.refuse(refusal, msg.sender, "a connection without a key of its own")
            return routing_id, data, self._key, msg
        name, key = holder
        if key is None:
            return routing_id, data, None, self.refuse("revoked", name, "its revoked key")
        msg = self._open(data, routing_id, key)
        if msg is not None and msg.sender != name:
            return routing_id, data, None, self.refuse("impersonation", msg.sender, f"node {name}'s key")
        return routing_id, data, key, msg

    def refuse(self, reason, name, how):
        """Count a message refused for ``reason`` (it claimed node ``name``, came by ``how``) and log it
        (:meth:`_log_limited`). Returns None (no message)."""
        self.extra_rejected[reason] += 1
        self._log_limited((reason, name), "bus %s: refused a message for node %r that came by %s (%s; counted, "
                          "further ones for %ss not logged)", self.sender, name, how, reason, LOG_EVERY)
        return None

    def _log_limited(self, key, *args):
        """Log a warning, unless one of the same ``key`` was logged within :data:`LOG_EVERY` seconds."""
        now = self._clock()
        if now - self._logged.get(key, -LOG_EVERY) >= LOG_EVERY:
            if len(self._logged) > 10000:
                self._logged.clear()
            self._logged[key] = now
            log.warning(*args)

    def _join(self, routing_id, data, public_key):
        """Answer a join request (``join {"name", "token"}``, :mod:`corral.wire.join`) from a connection of
        no node's key, ``public_key``: ``joined {json}``, or ``refused SENTENCE`` (counted, logged)."""
        ok, answer, name = self._answer_join(data, public_key)
        if not ok:
            self.extra_rejected["join"] += 1
            self._log_limited(("join", name), "bus %s: refused a join as node %r: %s", self.sender, name, answer)
        reply = b"joined " + json.dumps(answer).encode() if ok else b"refused " + answer.encode("utf-8")
        with contextlib.suppress(zmq.ZMQError):
            self._sock.send_multipart([routing_id, reply], flags=zmq.NOBLOCK)

    def _answer_join(self, data, public_key):
        """``(ok, reply body or sentence, name asked for)``; at most :data:`JOINS_A_SECOND` reach the
        store, so that a peer sending made-up tokens cannot keep it busy."""
        now = self._clock()
        while self._joins and self._joins[0] <= now - 1.0:
            self._joins.popleft()
        if len(self._joins) >= JOINS_A_SECOND:
            return False, "too many joins at once; try again in a second", "?"
        self._joins.append(now)
        try:
            request = json.loads(data[len(JOIN_PREFIX):MAX_JOIN_BYTES].decode("utf-8"))
            name, token = request["name"], request["token"]
            if len(data) > MAX_JOIN_BYTES or not isinstance(name, str) or not isinstance(token, str):
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return False, 'the join request is not one (expected join {"name": ..., "token": ...})', "?"
        ok, answer = self._identities.join(name, token, public_key)
        return ok, answer, name

    def send(self, peer: bytes, type: str, body: dict, epoch: int) -> bool:
        """Seal and send one message to the node named ``peer``; False if it cannot go now.

        Never blocks: a node never heard from, a disconnected one (EHOSTUNREACH),
        one whose key was revoked, or a full queue (EAGAIN) drops the message and returns False.
        """
        route = self._routes.get(peer)
        if route is None or not self._may_send(peer, route[1]):
            self.dropped += 1
            return False
        routing_id, key = route
        data = seal(key, type, self.sender, epoch, body, now=self._clock())
        try:
            self._sock.send_multipart([routing_id, data], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            if e.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def _may_send(self, peer, key):
        """Whether node ``peer``, last heard on a connection whose messages ``key`` signs, may still be
        sent to: not once it was revoked, or joined again with another key since."""
        if self._identities is None:
            return True
        name = peer.decode("utf-8")
        if key is self._key:
            return self._identities.refusal(name) is None
        return self._identities.sign_key(name) == key

    def peers(self) -> dict:
        """Return ``{node name: clock time of its last accepted message}``."""
        return dict(self._peers)


class _Connecting(_Endpoint):
    """What BusClient and BusSubscriber share: one connected socket per endpoint, a receive
    loop on each, one frame per message."""

    def _connect_all(self, endpoints, kind, curve_server_public, none_given, curve_keypair=None, **options):
        if not endpoints:
            raise ValueError(f"bus: {none_given}")
        self.endpoints = list(endpoints)
        self._socks = {}
        self._recipients = {}   # endpoint -> the name of the server there, once heard from
        for endpoint in self.endpoints:
            sock = self._ctx.socket(kind)
            _common_options(sock)
            for option, value in options.items():
                sock.setsockopt(getattr(zmq, option), value)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
            if curve_server_public is not None:   # the node's own key pair, else a fresh one per socket
                sock.curve_publickey, sock.curve_secretkey = curve_keypair or zmq.curve_keypair()
                sock.curve_serverkey = curve_server_public
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as e:
                sock.close(linger=0)
                for other in self._socks.values():
                    other.close(linger=0)
                if self._own_ctx:
                    self._ctx.term()
                raise ValueError(f"bus: cannot connect to {endpoint}: {e}") from None
            self._socks[endpoint] = sock

    def start(self):
        """Start one receiving green thread per endpoint; returns at once."""
        for endpoint, sock in self._socks.items():
            self._threads.append(eventlet.spawn(self._receive_loop, sock, endpoint))
        return self

    def _on_frames(self, frames, endpoint):
        if len(frames) != 1:
            self.extra_rejected["malformed"] += 1
            log.debug("bus %s: dropped a message of %d frames from %s (expected 1)", self.sender, len(frames), endpoint)
            return
        msg = self._open(frames[0], endpoint)
        if msg is not None:
            self._recipients[endpoint] = msg.sender   # what this end's messages there name as their recipient
            self._handler(endpoint, msg)

    def close(self):
        """Stop receiving and disconnect from every endpoint; safe to call twice."""
        if not self._closing:
            self._close_sockets(list(self._socks.values()))


class BusClient(_Connecting):
    """The agent's end: one DEALER per reconciler endpoint; it signs as ``sender``.

    A node with a key of its own (:class:`corral.wire.credentials.NodeCredential`) gives it as
    ``curve_keypair`` and its signing key as ``key``; else ``key`` is the cluster key and each
    socket makes a fresh key pair.

    ``handler(endpoint: str, msg: Message)`` is called in that endpoint's
    receive green thread for every accepted message. ``context``: a green
    ``zmq.Context`` to share with other clients in this process (many
    simulated agents, as in bench/scale.py), else one of its own; a shared
    one is left open by :meth:`close`.
    """

    def __init__(self, endpoints: list[str], key: bytes, sender: str, handler, window: float = 30.0,
                 clock=time.time, *, curve_server_public: bytes | None = None, context=None,
                 curve_keypair: tuple[bytes, bytes] | None = None):
        super().__init__(key, sender, handler, window, clock, context)
        self._connect_all(endpoints, zmq.DEALER, curve_server_public, "a client needs at least one reconciler endpoint",
                          curve_keypair=curve_keypair, IMMEDIATE=1)

    def send_all(self, type: str, body: dict, epoch: int = 0) -> int:
        """Seal and send one message to every reconciler; return how many took it.

        Never blocks: a reconciler that is not connected, or whose queue is
        full, misses this message (counted in ``dropped``).
        """
        taken = 0
        for i, (endpoint, sock) in enumerate(self._socks.items()):
            data = self._seal(type, body, epoch, to=self._recipients.get(endpoint))
            try:
                sock.send(data, flags=zmq.NOBLOCK)
            except zmq.Again:
                self.dropped += 1
            else:
                self.sent += 1
                taken += 1
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                eventlet.sleep(0)
        return taken

    def send_to(self, endpoint: str, type: str, body: dict, epoch: int = 0, attachment: bytes | None = None) -> bool:
        """Seal and send one message (with its ``attachment``, see :mod:`corral.wire.envelope`) to the
        reconciler at ``endpoint`` only (the one that opened a stream); False when it cannot go now
        (never blocks, counted in ``dropped``)."""
        sock = self._socks.get(endpoint)
        if sock is None:
            return False
        try:
            sock.send(self._seal(type, body, epoch, attachment, to=self._recipients.get(endpoint)), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True


class BusPublisher(_Bound):
    """A reconciler's route table feed: an XPUB bound at ``endpoint`` that sends signed messages
    to every subscriber (ZeroMQ PUB/SUB).

    ``on_subscribe()`` is called (in the receive green thread) whenever a subscriber joins
    or asks again (:meth:`BusSubscriber.resubscribe`): the publisher answers with a full
    snapshot. ``XPUB_VERBOSE`` passes every subscription up, not only the first of a topic,
    so a second router joining gets its snapshot too. A subscription is not signed (ZeroMQ
    makes it), so it can only ask for what the publisher sends anyway; the caller coalesces
    snapshots so that a flood of them costs one snapshot per interval.
    """

    def __init__(self, endpoint: str, key: bytes, sender: str, on_subscribe, window: float = 30.0,
                 clock=time.time, *, curve_secret: bytes | None = None, sndhwm: int = 10000, admits=None):
        super().__init__(key, sender, on_subscribe, window, clock)
        if admits is not None and curve_secret is None:
            raise ValueError("bus: admitting subscribers by key needs an encrypted feed (curve_secret)")
        self._zap = None if admits is None else zap.ZapHandler(self._ctx, admits)
        self._sock = self._bind(zmq.XPUB, endpoint, curve_secret, SNDHWM=sndhwm, XPUB_VERBOSE=1)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.subscriptions = 0

    def _on_frames(self, frames, name):
        if len(frames) == 1 and frames[0][:1] == b"\x01":
            self.subscriptions += 1
            self._handler()

    def publish(self, type: str, body: dict, epoch: int = 0) -> bool:
        """Seal and send one message to every subscriber; False when it could not go now.

        Never blocks; a subscriber whose queue is full misses it (PUB semantics) and notices
        the gap by the sequence number its body carries."""
        try:
            self._sock.send(self._seal(type, body, epoch), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True


class BusSubscriber(_Connecting):
    """A router's end of the route feeds: one SUB per publisher endpoint.

    ``handler(endpoint: str, msg: Message)`` gets every verified message; unsigned, forged,
    replayed or expired ones are dropped and counted as on every bus socket."""

    def __init__(self, endpoints: list[str], key: bytes, sender: str, handler, window: float = 30.0,
                 clock=time.time, *, curve_server_public: bytes | None = None, curve_keypair=None):
        super().__init__(key, sender, handler, window, clock)
        self._connect_all(endpoints, zmq.SUB, curve_server_public, "a subscriber needs at least one publisher endpoint",
                          curve_keypair=curve_keypair, SUBSCRIBE=b"")

    def resubscribe(self, endpoint: str):
        """Subscribe again at ``endpoint``: its publisher answers with a fresh snapshot."""
        sock = self._socks[endpoint]
        sock.setsockopt(zmq.UNSUBSCRIBE, b"")
        sock.setsockopt(zmq.SUBSCRIBE, b"")
