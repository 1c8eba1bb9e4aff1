"""Serving a WSGI app with eventlet.wsgi so that slow or greedy clients cannot hold it.

eventlet.wsgi gives each connection a green thread from a pool (1,024 by
default) and, with ``socket_timeout``, bounds each read, not a whole request:
a client sending its head a byte every few seconds (slowloris) keeps its green
thread for as long as it likes, and a thousand such connections leave none
for anyone else. Every HTTP server of corral (the reconciler's API, the
builder's, the metrics endpoints) is served through :func:`serve`, which adds
what HAProxy calls ``timeout http-request`` and ``maxconn`` per source:

- the request line and headers must arrive within ``head_timeout`` seconds
  of the connection being ready for them (after the accept, or after the
  previous answer on a keep-alive connection); past it the connection is
  closed without an answer. The body and the answer keep ``socket_timeout``
  per read or write, so a long ``logs -f`` or ``get -w`` is not cut;
- one client address holds at most ``per_client`` connections at once; the
  next is answered ``503`` with ``Connection: close`` and closed at once,
  without taking a green thread of the pool.
"""
import eventlet
import eventlet.greenpool
import eventlet.wsgi

HEAD_TIMEOUT = 10.0     # seconds for a request line and its headers
PER_CLIENT = 256        # connections one client address may hold at once
POOL_SIZE = 1024        # green threads serving connections (eventlet.wsgi's default)
SOCKET_TIMEOUT = 60.0   # seconds any one read or write may wait, once the head is in

_BUSY_BODY = b'{"error": "too many connections from this address; close some first"}'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class HeadTimeout(eventlet.Timeout):
    """The request head did not arrive in time."""


class HeadDeadlineProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet.wsgi's protocol with one deadline over the request line and headers together."""

    head_timeout = HEAD_TIMEOUT

    def handle_one_request(self):
        """One request: the head under :attr:`head_timeout` (closing the connection when it is
        late), then eventlet.wsgi's handling."""
        self._head_deadline = HeadTimeout(self.head_timeout)
        try:
            super().handle_one_request()
        except HeadTimeout as e:
            if e is not self._head_deadline:
                raise
            self.close_connection = 1
        finally:
            self._head_deadline.cancel()

    def parse_request(self):
        """The headers are in (or refused): the deadline is over, the body has ``socket_timeout``."""
        try:
            return super().parse_request()
        finally:
            self._head_deadline.cancel()


class ClientPool(eventlet.greenpool.GreenPool):
    """The pool eventlet.wsgi spawns each connection in, counting connections per client address:
    one over ``per_client`` is answered :data:`BUSY` outside the pool."""

    def __init__(self, size=POOL_SIZE, per_client=PER_CLIENT):
        super().__init__(size)
        self.per_client = per_client
        self.held = {}   # client address (host) -> connections open

    def spawn(self, function, connection, *args):
        """Serve ``connection`` (eventlet.wsgi's ``[address, socket, state]``), or refuse it."""
        host = connection[0][0] if isinstance(connection[0], tuple) else connection[0]
        if self.held.get(host, 0) >= self.per_client:
            return eventlet.spawn(_refuse, connection[1])
        self.held[host] = self.held.get(host, 0) + 1
        thread = super().spawn(function, connection, *args)
        thread.link(self._release, host)
        return thread

    def _release(self, _thread, host):
        left = self.held.get(host, 1) - 1
        if left:
            self.held[host] = left
        else:
            self.held.pop(host, None)


def _refuse(sock):
    try:
        sock.sendall(BUSY)
    except OSError:
        pass


def serve(sock, app, *, log=None, log_output=False, head_timeout=HEAD_TIMEOUT, per_client=PER_CLIENT,
          socket_timeout=SOCKET_TIMEOUT, pool_size=POOL_SIZE):
    """Serve ``app`` on the listening ``sock`` until killed (run it in a green thread); ``log``
    and ``log_output`` as eventlet.wsgi takes them (the server's own log; the access log)."""
    protocol = type("Protocol", (HeadDeadlineProtocol,), {"head_timeout": head_timeout})
    options = {"log": log} if log is not None else {}
    eventlet.wsgi.server(sock, app, protocol=protocol, custom_pool=ClientPool(pool_size, per_client),
                         socket_timeout=socket_timeout, log_output=log_output, **options)
