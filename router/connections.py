"""The router's sockets: a read or a write goes to the OS socket first, and waits only when
the kernel has nothing (or no room), with as little per wait as eventlet allows.

Why not eventlet's green sockets, which do the same: on the proxy's path (a
request in, a request out, an answer in, an answer out, tens of thousands a
second on one core) every wait through them costs two ``epoll_ctl`` (the
descriptor is registered with the hub and unregistered again), a timer (made,
pushed on the hub's heap, cancelled) and an exception object made in advance.
A :class:`Conn` instead

- stays registered for reading with the hub while it is open: a wait for bytes
  registers only the first time. Readiness nobody waits for (a peer that
  closed a pooled connection, a client that pipelined) unregisters it, so the
  hub never spins on it, and the next wait registers it again;
- keeps one timer per connection, not per wait: a wait sets a deadline, and the
  timer, when it fires, either ends a wait past its deadline or sets itself
  again for the later deadline. A connection kept alive for a minute costs one
  timer a minute;
- writes on the OS socket, waiting (eventlet's ``trampoline``) only when the
  kernel has no room, which on a loopback or a LAN is rare;
- can hold a write until the hub has run every green thread its last poll woke
  (:meth:`Conn.send_soon`, the hub's :class:`Outbox`): the writes of a round go
  out together, so a peer asleep in its poll is woken once for many of them,
  not once for each. Waking another process costs the writer more than the
  write (on a virtual machine an interrupt between cores exits to the
  hypervisor): a request the router passes on and an answer it passes back
  both go this way.

One green thread reads a Conn at a time (another may write it meanwhile, as
an upgraded connection's two pumps do). A Conn must be closed with
:meth:`Conn.close` (the hub holds it while it is registered). A TLS socket (which buffers inside OpenSSL, where ``epoll`` cannot
see) is served by :class:`GreenConn`, the same methods over eventlet's socket.
"""
import socket
import time
import weakref

import greenlet
from eventlet import hubs
from eventlet.greenio import GreenSocket

READY, TIMED_OUT, CLOSED, UNSENT = object(), object(), object(), object()
CLOSING_WRITE = 5.0   # seconds close() waits for room to send what send_soon still holds


class _Socket:
    """What both kinds of connection do the same way, on their eventlet socket ``green``."""

    __slots__ = ()

    def shutdown(self):
        """Shut both directions (wakes the connection's reader with an end), ignoring a socket
        already gone."""
        try:
            self.green.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def setsockopt(self, *args):
        self.green.setsockopt(*args)


class Conn(_Socket):
    """A connected TCP socket of the router. ``green`` is the eventlet socket that owns the
    descriptor (kept so that the descriptor lives as long as this); ``raw`` the OS socket
    under it, non-blocking."""

    __slots__ = ("green", "raw", "fileno", "_hub", "_outbox", "_listener", "_waiter", "_deadline", "_timer",
                 "_timer_at", "_unsent", "closed")

    def __init__(self, green):
        self.green, self.raw = green, green.fd
        self.fileno = self.raw.fileno()
        self._hub = hub = hubs.get_hub()
        self._outbox = Outbox.of(hub)
        self._listener = self._waiter = self._timer = self._unsent = None
        self._deadline = self._timer_at = 0.0
        self.closed = False

    # -- reading ------------------------------------------------------------------------------

    def recv(self, size, timeout, wait_first=False):
        """Up to ``size`` bytes, waiting at most ``timeout`` seconds for the first: ``b""`` when
        the peer closed; :class:`socket.timeout` after ``timeout``; ``OSError`` on a reset.
        ``wait_first``: wait for readiness before reading, for a read that almost never finds
        bytes at once (a kept-alive client's next request); the read that would fail, a system
        call and an exception, is saved."""
        raw = self.raw
        if wait_first:
            self.wait_readable(timeout)
        while True:
            try:
                return raw.recv(size)
            except BlockingIOError:
                self.wait_readable(timeout)

    def wait_readable(self, timeout):
        """Return when the socket has something to read (bytes, an end, an error); raise
        :class:`socket.timeout` after ``timeout`` seconds."""
        if self.closed:
            raise OSError("the connection is closed")
        hub = self._hub
        if self._listener is None:
            self._listener = hub.add(hub.READ, self.fileno, self._wake, self._obsoleted, self._forget)
        self._deadline = deadline = time.monotonic() + timeout
        if self._timer is None or self._timer_at > deadline:
            self._arm(timeout, deadline)
        while True:
            self._waiter = greenlet.getcurrent()
            try:
                # Straight to the hub's loop: hub.switch() first checks, on every wait, what only a
                # hub that ended or a green thread not spawned by eventlet needs (1.5 us of 4 a wait).
                woke = hub.greenlet.switch() if not hub.greenlet.dead else hub.switch()
            finally:
                self._waiter = None
            if woke is READY:
                return
            if woke is TIMED_OUT:
                raise socket.timeout("timed out")
            if woke is CLOSED:
                raise OSError("the connection was closed while waiting")
            if woke is UNSENT:   # the outbox left part of this connection's write: finish it, then wait on
                data, self._unsent = self._unsent, None
                self.send_all(data, timeout)
                if self._timer is None:   # it lapsed meanwhile, nobody waiting
                    self._arm(max(0.0, deadline - time.monotonic()), deadline)

    def _wake(self, _fileno):
        """The hub says the socket is readable: wake its reader, else stop listening (nobody
        asked: a level-triggered poll would call again and again)."""
        waiter = self._waiter
        if waiter is not None:
            waiter.switch(READY)
        else:
            self._unlisten()

    def _obsoleted(self, exc):
        """The hub saw the descriptor number reused (closed behind this Conn's back): the
        reader, if any, gets the hub's exception."""
        self._listener = None
        waiter = self._waiter
        if waiter is not None:
            waiter.throw(exc)

    def _forget(self):
        self._listener = None

    def _unlisten(self):
        listener, self._listener = self._listener, None
        if listener is not None:
            self._hub.remove(listener)

    # -- the deadline timer ---------------------------------------------------------------------

    def _arm(self, seconds, at):
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._hub.schedule_call_global(seconds, self._on_timer)

    def _on_timer(self):
        """The connection's timer fired: end a wait that is past its deadline, set the timer
        again for a wait whose deadline is later, and let it lapse when nothing waits."""
        self._timer = None
        waiter = self._waiter
        if waiter is None:
            return
        left = self._deadline - time.monotonic()
        if left <= 0.0005:
            waiter.switch(TIMED_OUT)
        else:
            self._arm(left, self._deadline)

    # -- writing --------------------------------------------------------------------------------

    def send_all(self, data, timeout):
        """Send all of ``data`` (after what :meth:`send_soon` holds), waiting at most ``timeout``
        seconds at a time for room; :class:`socket.timeout` after that, ``OSError`` when the
        peer is gone."""
        if self._unsent is not None:   # the outbox finds nothing left for it
            data, self._unsent = self._unsent + data, None
        raw = self.raw
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                view = view[raw.send(view):]
                continue
            except BlockingIOError:
                pass
            if self.closed:
                raise OSError("the connection is closed")
            hubs.trampoline(self.fileno, write=True, timeout=timeout, timeout_exc=socket.timeout("timed out"))

    def send_soon(self, data, timeout):
        """Send ``data`` when the hub has run the green threads its last poll woke, with the
        writes they made (see :class:`Outbox`). The caller's next wait must be a read of this
        connection: a write the kernel does not take whole is finished by that wait (waiting
        at most ``timeout`` for room), and a failed one shows as that read's end or reset."""
        if self._unsent is not None:
            self._unsent += data
            return
        self._unsent = data
        self._outbox.hold(self)

    def _send_held(self):
        """The outbox's turn: write what :meth:`send_soon` holds. What the kernel does not take is
        left for this connection's reader to finish; with no reader (a backend that answered
        before it was asked), the connection is shut."""
        data, self._unsent = self._unsent, None
        if data is None or self.closed:
            return
        try:
            sent = self.raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return   # the peer is gone: the reader's next read says so
        if sent == len(data):
            return
        self._unsent = data[sent:]
        if self._waiter is not None:
            self._waiter.switch(UNSENT)
        else:
            self._unsent = None
            self.shutdown()

    # -- the rest -------------------------------------------------------------------------------

    def close(self):
        """Stop listening, cancel the timer, close the socket; twice is harmless. A green thread
        that waits to read it (another one than the caller) is woken with an error."""
        if self.closed:
            return
        if self._unsent is not None:   # a last answer the outbox has not sent yet is sent first
            data, self._unsent = self._unsent, None
            try:
                if greenlet.getcurrent() is self._hub.greenlet:
                    self.raw.send(data)   # the hub cannot wait: one try
                else:
                    self.send_all(data, CLOSING_WRITE)
            except OSError:
                pass
        self.closed = True
        self._unlisten()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and waiter is not greenlet.getcurrent():
            self._hub.schedule_call_global(0, waiter.switch, CLOSED)
        self.green.close()


class Outbox:
    """A hub's held writes (:meth:`Conn.send_soon`): made in one go, as the hub's next
    timer, once the green threads its last poll woke have run. A peer asleep in its poll is
    woken by the first of its writes and finds the rest already there."""

    __slots__ = ("hub", "conns")
    _of_hub = weakref.WeakKeyDictionary()

    def __init__(self, hub):
        self.hub, self.conns = hub, []

    @classmethod
    def of(cls, hub):
        """The outbox of ``hub`` (one a hub)."""
        box = cls._of_hub.get(hub)
        if box is None:
            box = cls._of_hub[hub] = cls(hub)
        return box

    def hold(self, conn):
        """Make ``conn``'s held write with the others of this round."""
        if not self.conns:
            self.hub.schedule_call_global(0, self.send)
        self.conns.append(conn)

    def send(self):
        """Make every held write. An error out of one (a green thread that ended with one while
        this switched to it to finish its write) leaves the others held for the next turn."""
        conns, self.conns = self.conns, []
        for i, conn in enumerate(conns):
            try:
                conn._send_held()
            except BaseException:
                for rest in conns[i + 1:]:
                    self.hold(rest)
                raise


class GreenConn(_Socket):
    """The methods of :class:`Conn` over an eventlet socket of any kind (a TLS one)."""

    __slots__ = ("green", "closed")

    def __init__(self, green):
        self.green, self.closed = green, False

    def recv(self, size, timeout, wait_first=False):
        """As :meth:`Conn.recv` (``wait_first`` is moot: eventlet's socket waits as it needs)."""
        self.green.settimeout(timeout)
        return self.green.recv(size)

    def send_all(self, data, timeout):
        """As :meth:`Conn.send_all`."""
        self.green.settimeout(timeout)
        self.green.sendall(data)

    def send_soon(self, data, timeout):
        """As :meth:`Conn.send_soon`, but sent at once (a TLS socket writes through OpenSSL)."""
        self.send_all(data, timeout)

    def close(self):
        """As :meth:`Conn.close`."""
        self.closed = True
        self.green.close()


def wrap(sock):
    """The router's connection over ``sock``: a :class:`Conn` for a plain green TCP socket, a
    :class:`GreenConn` for anything else (a TLS socket)."""
    return Conn(sock) if type(sock) is GreenSocket else GreenConn(sock)


def connect(address, timeout):
    """A :class:`Conn` to ``address`` (``(host, port)``), connected within ``timeout`` seconds,
    with ``TCP_NODELAY``; ``OSError`` when it cannot be.

    Bytes sent on it that the peer's kernel does not acknowledge within ``timeout`` either end
    the connection (``TCP_USER_TIMEOUT``: a read or write then fails with ``ETIMEDOUT``). A
    kept-alive connection to a host that is gone (powered off, cut off) would otherwise take a
    request and keep it until the response timeout; a live host acknowledges at once, however
    slow its app is to answer."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    green = GreenSocket(family, socket.SOCK_STREAM)
    try:
        green.settimeout(timeout)
        green.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(timeout * 1000)))
        green.connect(address)
        green.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        green.close()
        raise
    return Conn(green)
