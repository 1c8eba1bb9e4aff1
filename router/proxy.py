"""The router's HTTP/1.1 proxy: one green thread per client connection.

Per request::

    read head (limits, slowloris timeout) -> parse (router/http.py, strict)
      -> route by host and path (corral/routetable.py)   404: unknown host / 503: no ready backend
      -> pick a backend (least outstanding, two choices)
      -> pooled keep-alive connection, else connect (connect timeout)
      -> send head (+ body streamed) -> read response head (response timeout)
           connect failed: next backend; reset before any response byte: next backend
           when the request can be sent again (no body, or one held whole, and it
           is idempotent)
      -> response streamed to the client (101: both ways until either closes)
      -> access log line, per-route counters; the backend connection back to its pool

Answers the router makes itself (:func:`router.http.own_page`) say which
failure it was: ``502`` a backend refused or reset the connection, ``503`` no
ready backend, ``504`` a backend too slow to answer, ``408`` a client too
slow to send its head.
"""
import collections
import dataclasses
import functools
import ipaddress
import logging
import random
import socket
import time

import eventlet

from corral.routetable import Table
from router import balance, http
from router.connections import connect, wrap
from router.pool import Pool
from router.bodies import BACKEND, CLIENT, HeadTooSlow, Reader, SideError, relay_chunked, relay_length, \
    relay_until_close, send

log = logging.getLogger(__name__)
access = logging.getLogger("corral.router.access")

MAX_ATTEMPTS = 4
REST = 5.0   # seconds a backend that failed a connection gets no request while another is left
# Access log lines are written in batches: at most this many seconds after the first of a batch,
# or once this many wait. A record (and a write and a flush) a line cost a worker as much CPU as
# the request it logged.
ACCESS_LOG_EVERY, ACCESS_LOG_LINES = 0.5, 1000


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Seconds the router waits, each for one thing."""

    connect: float = 2.0      # a backend's TCP connect
    response: float = 60.0    # a backend's response head, after the request was sent
    idle: float = 60.0        # a kept-alive client's next request
    header: float = 10.0      # a client's whole head, from its first byte (slowloris)
    client_io: float = 30.0   # a client stalled while sending a body or reading a response
    backend_io: float = 60.0  # a backend stalled mid-body
    tunnel_idle: float = 300.0  # an upgraded connection (WebSocket) with no bytes either way


class Failure(Exception):
    """The exchange failed with an answer for the client: ``status``, reason and a sentence."""

    def __init__(self, status, reason, sentence):
        super().__init__(sentence)
        self.status, self.reason = status, reason


class Retry(Exception):
    """The request may go to another backend (nothing of it reached an app, or it can be sent
    again); ``lost``: the backend's host acknowledged nothing (see :mod:`router.connections`)."""

    def __init__(self, lost=False):
        super().__init__()
        self.lost = lost


class Exchange:
    """One request in flight: what the access log and the counters need. What is not set yet
    reads as the class's default (one object a request, made with three attributes)."""

    head = None
    host = target = rid = backend = "-"
    trusted = close = False
    status = sent = 0

    def __init__(self, peer, started, proto):
        self.peer, self.started, self.proto = peer, started, proto


def access_line(x, now):
    """The access log line of exchange ``x`` (Common Log Format, then host, duration and backend)."""
    method = x.head.start[0] if x.head else "-"
    stamp = _log_time(int(now))
    return (f'{x.peer} - - [{stamp}] "{method} {x.target} {x.head.version if x.head else "-"}" {x.status} '
            f'{x.sent} host={x.host} duration={now - x.started:.4f} backend={x.backend} rid={x.rid}')


@functools.lru_cache(maxsize=4)
def _log_time(second):
    """The access log's time of ``second`` (epoch seconds, UTC): the same one for every line within it."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))


class Proxy:
    """One router process's proxy state: the table it serves, requests in flight per backend,
    idle backend connections, counters per route."""

    def __init__(self, limits=http.Limits(), timeouts=Timeouts(), trusted=(), proto="http", pool_size=64,
                 rng=None):
        self.limits, self.timeouts, self.proto = limits, timeouts, proto
        self.trusted_nets = [ipaddress.ip_network(t, strict=False) for t in trusted]
        self._trusted = {}
        self.table = Table()
        self.outstanding = collections.Counter()
        self.pool = Pool(pool_size)
        self.rng = rng or random.Random()
        self._counts = collections.defaultdict(collections.Counter)   # (host, path) -> counts
        self.resting = {}   # backend id -> when (time.monotonic()) it may have requests again
        self._access_lines = []   # not written yet (see flush_access_log)

    @property
    def counters(self):
        """The counts of each route that had requests, by ``"host path"``."""
        return {f"{host} {path}": counts for (host, path), counts in self._counts.items()}

    def set_table(self, table):
        """Serve ``table`` from the next request on; idle connections to backends it no longer has are closed."""
        self.table = table
        ids = {b.id for r in table.routes.values() for b in r.backends}
        self.pool.keep_only(ids)
        self.resting = {k: until for k, until in self.resting.items() if k in ids}

    def is_trusted(self, peer):
        """True when ``peer`` (an address) is in a trusted proxy network (cached per address)."""
        hit = self._trusted.get(peer)
        if hit is None:
            try:
                addr = ipaddress.ip_address(peer)
                hit = any(addr in net for net in self.trusted_nets)
            except ValueError:
                hit = False
            if len(self._trusted) > 10000:
                self._trusted.clear()
            self._trusted[peer] = hit
        return hit

    # -- a client connection --------------------------------------------------------------

    def handle(self, sock, addr, proto=None):
        """Serve one client connection until it closes, idles out, or a request ends it;
        ``proto`` (``http``, ``https``) is what ``X-Forwarded-Proto`` says (default: the proxy's)."""
        peer = addr[0] if isinstance(addr, tuple) else "-"
        sock = wrap(sock)
        client = Reader(sock, CLIENT)
        proto = proto or self.proto
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while self._one_request(sock, client, peer, proto):
                pass
        except SideError:
            pass
        finally:
            sock.close()

    def _too_big(self, buf):
        nl = buf.find(b"\r\n")
        if (nl < 0 and len(buf) > self.limits.request_line) or nl > self.limits.request_line:
            raise http.BadMessage(414, f"the request line is longer than {self.limits.request_line} bytes")
        if len(buf) > self.limits.header_bytes + self.limits.request_line:
            raise http.BadMessage(431, f"the request head is larger than {self.limits.header_bytes} bytes")

    def _one_request(self, sock, client, peer, proto):
        """Read and answer one request; True when the connection may carry another."""
        t = self.timeouts
        x = Exchange(peer, time.time(), proto)
        try:
            raw = client.head(self.limits, t.idle, t.header, self._too_big)
            if raw is None:
                return False
            x.started = time.time()
            x.head = head = http.parse_request(raw, self.limits)
            x.target = head.start[1]
            x.host, x.target = http.request_host(head)
        except HeadTooSlow:
            return self._answer(sock, x, 408, "Request Timeout", f"the request head did not arrive within "
                                f"{t.header:g} s", close=True)
        except http.BadMessage as e:
            return self._answer(sock, x, e.status, _REASONS.get(e.status, "Bad Request"), str(e), close=True)
        x.trusted = self.is_trusted(peer)
        x.rid = http.request_id(head, x.trusted) or "%024x" % self.rng.getrandbits(96)
        return self._route(sock, client, x)

    def _answer(self, sock, x, status, reason, sentence, close, retry_after=None):
        """Send one of the router's own pages; True when the connection stays open."""
        x.status, x.close = status, close
        page = http.own_page(status, reason, sentence, close=close, retry_after=retry_after)
        x.sent = len(page)
        try:
            send(sock, page, CLIENT, self.timeouts.client_io)
        finally:
            self._log(x)
        return not close

    def _route(self, sock, client, x):
        head = x.head
        path = x.target.partition("?")[0]
        route = self.table.match(x.host, path)
        if route is None:
            return self._answer(sock, x, 404, "Not Found", f"no app is served at {x.host}{path}",
                                close=_closes_after_own_page(head))
        counts = self._counts[(route.host, route.path)]
        counts["requests"] += 1
        if not route.backends:
            counts["unavailable"] += 1
            return self._answer(sock, x, 503, "Service Unavailable", f"app {route.app} has no ready instance "
                                f"of process {route.process}", close=_closes_after_own_page(head), retry_after=1)
        try:
            keep = self._forward(sock, client, x, route)
        except Failure as e:
            counts[f"{e.status}"] += 1
            return self._answer(sock, x, e.status, e.reason, str(e), close=True)
        counts[_STATUS_CLASS.get(x.status // 100) or f"{x.status // 100}xx"] += 1
        if x.status != 101:   # an upgrade was logged when it began
            self._log(x)
        return keep

    def _log(self, x):
        if access.isEnabledFor(logging.INFO):
            lines = self._access_lines
            lines.append(access_line(x, time.time()))
            if len(lines) == 1:
                eventlet.spawn_after(ACCESS_LOG_EVERY, self.flush_access_log)
            elif len(lines) >= ACCESS_LOG_LINES:
                self.flush_access_log()

    def flush_access_log(self):
        """Write the access log lines of the requests logged since the last time, as one record."""
        lines, self._access_lines = self._access_lines, []
        if lines:
            access.info("%s", "\n".join(lines))

    # -- one request to a backend ------------------------------------------------------------

    def _forward(self, sock, client, x, route):
        """Send the request to a backend of ``route`` (retrying on another where safe) and the
        answer back; True when the client connection may carry another request."""
        head = x.head
        held = not head.chunked and len(client.buf) >= (head.length or 0)   # the whole body is read
        replayable = held and head.start[0] in http.IDEMPOTENT
        tried, refused = set(), 0   # backends that refused or reset: not tried again
        resting = self.resting
        if resting:
            now = time.monotonic()
            for backend_id in [b for b, until in resting.items() if until <= now]:
                del resting[backend_id]
        for _ in range(MAX_ATTEMPTS):
            backend = balance.pick(route.backends, self.outstanding, self.rng, tried, resting)
            if backend is None:
                break
            self.outstanding[backend.id] += 1   # a connect under way counts: others go elsewhere meanwhile
            try:
                conn, reused = self.pool.get(backend, peek=not replayable), True
                if conn is None:
                    reused = False
                    try:
                        conn = connect((backend.address, backend.port), self.timeouts.connect)
                    except OSError as e:
                        self._failed_connection(route, backend, f"did not take a connection ({_why(e)})")
                        tried.add(backend.id)
                        refused += 1
                        continue
                x.backend = backend.id
                try:
                    return self._exchange(sock, client, x, route, backend, conn, held, replayable)
                except Retry as retry:
                    conn.close()
                    if reused:
                        self.pool.drop(backend)   # its other idle connections are likely dead too
                    if retry.lost or not reused:
                        self._failed_connection(route, backend, _LOST if retry.lost else
                                                "closed a new connection before it answered")
                        tried.add(backend.id)
                except BaseException:
                    conn.close()
                    raise
            finally:
                self.outstanding[backend.id] -= 1
        raise Failure(502, "Bad Gateway", f"no instance of app {route.app} accepted the request "
                                          f"({refused} refused the connection, {len(route.backends)} ready)")

    def _failed_connection(self, route, backend, what):
        """``backend`` failed a connection: it rests for :data:`REST` seconds (see
        :mod:`router.balance`), said once a rest, and the route counts it."""
        if backend.id not in self.resting:
            log.warning("instance %s at %s:%s %s: it gets no request for %g s unless no other is left",
                        backend.id, backend.address, backend.port, what, REST)
        self.resting[backend.id] = time.monotonic() + REST
        self._counts[(route.host, route.path)]["connections_failed"] += 1

    def _exchange(self, sock, client, x, route, backend, conn, held, may_retry):
        """One attempt on ``conn``, the request's body ``held`` whole in the client's buffer or
        not. Raises :class:`Retry` when the backend failed before any answer byte and the
        request may be sent again (``may_retry``: idempotent, and its body held), :class:`Failure`
        for an answer of the router's own; returns whether the client connection may carry another
        request."""
        head, t = x.head, self.timeouts
        upgrade = http.wants_upgrade(head)
        out = http.backend_head(head, x.target, host_header=head.get(b"host") or x.host.encode(), peer=x.peer,
                                proto=x.proto, rid=x.rid, trusted=x.trusted, upgrade=upgrade,
                                body_chunked=head.chunked)
        body_len = head.length or 0
        reader = Reader(conn, BACKEND)
        try:
            if held:   # sent with the round's other writes (the next step reads this connection)
                conn.send_soon(out + bytes(client.buf[:body_len]) if body_len else out, t.backend_io)
            else:
                send(conn, out, BACKEND, t.backend_io)
                self._stream_request_body(sock, client, conn, head)
            resp = self._response_head(reader)
        except SideError as e:
            if e.side == CLIENT:
                raise
            if e.kind == "timeout":
                raise Failure(504, "Gateway Timeout", f"instance {backend.id} did not answer within "
                                                      f"{t.response:g} s") from None
            lost = e.kind == "lost"
            if may_retry and not reader.received:
                raise Retry(lost) from None
            if lost:
                self._failed_connection(route, backend, _LOST)
                raise Failure(502, "Bad Gateway", f"instance {backend.id} {_LOST}") from None
            raise Failure(502, "Bad Gateway", f"instance {backend.id} closed the connection before it "
                                              "answered") from None
        if held and body_len:
            del client.buf[:body_len]
        return self._respond(sock, client, x, backend, conn, reader, resp, upgrade)

    def _stream_request_body(self, sock, client, conn, head):
        t = self.timeouts
        expect = head.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue":
            send(sock, b"HTTP/1.1 100 Continue\r\n\r\n", CLIENT, t.client_io)

        def to_backend(piece):
            send(conn, piece, BACKEND, t.backend_io)
        if head.chunked:
            relay_chunked(client, to_backend, t.client_io)
        elif head.length:
            relay_length(client, head.length, to_backend, t.client_io)

    def _response_head(self, reader):
        """The backend's response head (1xx informational answers skipped, 101 kept)."""
        while True:
            try:
                raw = reader.until_blank_line(65536, self.timeouts.response)
            except SideError as e:
                if e.kind == "malformed":
                    raise Failure(502, "Bad Gateway", "the instance's answer head is larger than 64 KiB") from None
                raise
            try:
                resp = http.parse_response(raw)
            except http.BadMessage as e:
                raise Failure(502, "Bad Gateway", f"the instance sent a malformed answer: {e}") from None
            if resp.start[0] == 101 or resp.start[0] >= 200:
                return resp

    def _respond(self, sock, client, x, backend, conn, reader, resp, upgrade):
        """Pass the response (head and body) to the client; keep ``conn`` when it can serve again."""
        t = self.timeouts
        status = resp.start[0]
        x.status = status
        if status == 101:
            if upgrade is None:
                raise Failure(502, "Bad Gateway", f"instance {backend.id} switched protocols unasked")
            send(sock, http.client_head(resp, chunked=False, close=False, rid=x.rid) + bytes(reader.buf),
                 CLIENT, t.client_io)
            reader.buf.clear()
            x.close = True
            self._log(x)
            tunnel(sock, client, conn, t.tunnel_idle)
            return False
        method = x.head.start[0]
        no_body = http.has_no_body(method, status)
        until_close = not no_body and not resp.chunked and resp.length is None
        old_client = x.head.version == "HTTP/1.0"
        chunked_out = not no_body and (resp.chunked or until_close) and not old_client
        x.close = x.close or (until_close and old_client) or not http.keep_alive(x.head)
        head_bytes = http.client_head(resp, chunked=chunked_out, close=x.close, rid=x.rid)
        if no_body or (resp.length is not None and len(reader.buf) >= resp.length):   # the whole answer is here
            if not no_body:
                head_bytes += reader.take_all(resp.length)
                x.sent = resp.length
            if x.close or client.buf:
                send(sock, head_bytes, CLIENT, t.client_io)
            else:   # with the round's other writes: the next step waits for this client's next request
                sock.send_soon(head_bytes, t.client_io)
        else:
            send(sock, head_bytes, CLIENT, t.client_io)
            x.sent = self._relay_response(sock, reader, resp, chunked_out)
        tokens = resp.connection
        reusable = not until_close and not reader.buf and b"close" not in tokens and \
            (resp.version == "HTTP/1.1" or b"keep-alive" in tokens)
        if reusable:
            self.pool.put(backend, conn)
        else:
            conn.close()
        return not x.close

    def _relay_response(self, sock, reader, resp, chunked_out):
        t = self.timeouts

        def to_client(piece):
            send(sock, piece, CLIENT, t.client_io)
        try:
            if resp.chunked:
                return relay_chunked(reader, to_client, t.backend_io, chunked_out=chunked_out)
            if resp.length is not None:
                return relay_length(reader, resp.length, to_client, t.backend_io)
            return relay_until_close(reader, to_client, t.backend_io, chunked_out=chunked_out)
        except SideError as e:
            if e.side == BACKEND:   # the head went out already: all the client can learn is a cut
                raise SideError(CLIENT, "cut") from None
            raise


_LOST = "acknowledged nothing sent within the connect timeout (its host or the network is gone)"


def _why(error):
    """What an ``OSError`` of a connect says, briefly (``timed out``, ``Connection refused``)."""
    return error.strerror or str(error) or type(error).__name__


def _closes_after_own_page(head):
    """True when the connection of a request the router answers itself is closed after it: the
    client will not send another, or sent a body the router did not read."""
    return head.chunked or bool(head.length) or not http.keep_alive(head)


def tunnel(sock, client, conn, idle):
    """Copy bytes both ways between the client and the backend until either side closes or
    both stay silent for ``idle`` seconds (an upgraded connection: WebSocket and the like)."""
    def pump(src, dst):
        try:
            while True:
                data = src.recv(65536, idle)
                if not data:
                    break
                dst.send_all(data, idle)
        except OSError:
            pass
        finally:
            src.shutdown()
            dst.shutdown()
    if client.buf:
        try:
            conn.send_all(bytes(client.buf), idle)
        except OSError:
            conn.close()
            return
        client.buf.clear()
    other = eventlet.spawn(pump, conn, sock)
    pump(sock, conn)
    other.wait()
    conn.close()


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 501: "Not Implemented", 505: "HTTP Version Not Supported"}
