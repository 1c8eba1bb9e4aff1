"""Bytes between the router's sockets: a buffered reader, and body relays that never hold a
whole body (a piece of at most :data:`PIECE` bytes at a time).

Every failure says which side it was on (:class:`SideError`), because the
answer differs: a client that went away is just closed, a backend that
failed becomes a 502 or a 504, or a retry on another backend.
"""
import socket
import time

PIECE = 65536
CLIENT, BACKEND = "client", "backend"


class SideError(Exception):
    """A read or write failed on ``side`` (:data:`CLIENT` or :data:`BACKEND`); ``kind`` is
    ``timeout`` (the router's own wait ran out), ``lost`` (the peer's kernel acknowledged
    nothing sent for the connection's ``TCP_USER_TIMEOUT``: its host or the network is gone),
    ``closed`` (EOF) or ``reset``; ``any_bytes``: whether that side had sent anything on this
    exchange before it failed."""

    def __init__(self, side, kind, any_bytes=True):
        super().__init__(f"{side} {kind}")
        self.side, self.kind, self.any_bytes = side, kind, any_bytes


class HeadTooSlow(Exception):
    """A client took longer than the header timeout to send its request head (slowloris)."""


def send(conn, data, side, timeout):
    """Send all of ``data`` on ``conn`` (a :mod:`router.connections` connection) within ``timeout``
    seconds of no progress."""
    try:
        conn.send_all(data, timeout)
    except socket.timeout as e:
        raise SideError(side, _timeout_kind(e)) from None
    except OSError:
        raise SideError(side, "reset") from None


def _timeout_kind(error):
    """``timeout`` for the router's own deadline (raised without an errno), ``lost`` for the
    kernel's ``ETIMEDOUT`` (nothing acknowledged within the connection's user timeout)."""
    return "timeout" if error.errno is None else "lost"


class Reader:
    """A connection's incoming bytes with a buffer; ``side`` names it in errors."""

    __slots__ = ("conn", "buf", "side", "received")

    def __init__(self, conn, side):
        self.conn, self.side, self.buf, self.received = conn, side, bytearray(), 0

    def fill(self, timeout, wait_first=False):
        """Read what is there (waiting at most ``timeout`` seconds) into the buffer;
        ``wait_first``: nothing is expected yet (see :meth:`router.connections.Conn.recv`)."""
        try:
            data = self.conn.recv(PIECE, timeout, wait_first)
        except socket.timeout as e:
            raise SideError(self.side, _timeout_kind(e), self.received > 0) from None
        except OSError:
            raise SideError(self.side, "reset", self.received > 0) from None
        if not data:
            raise SideError(self.side, "closed", self.received > 0)
        self.received += len(data)
        self.buf += data

    def head(self, limits, first_timeout, head_timeout, too_big):
        """The bytes of the next head (without its blank line), or None when the peer closed
        or stayed silent for ``first_timeout`` before sending a byte. After the first byte
        the whole head must come within ``head_timeout`` (else :class:`HeadTooSlow`);
        ``too_big(buf)`` raises when the bytes so far are over the limits."""
        buf = self.buf
        if not buf:
            try:
                self.fill(first_timeout, wait_first=True)
            except SideError:
                return None
        if buf[0] not in b"\r\n":   # the common case: a head that came whole, in one read
            end = buf.find(b"\r\n\r\n")
            if end > 0:
                head = bytes(buf[:end])
                del buf[:end + 4]
                return head
        return self._head_slowly(first_timeout, head_timeout, too_big)

    def _head_slowly(self, first_timeout, head_timeout, too_big):
        try:
            while not self.buf.lstrip(b"\r\n"):
                self.buf.clear()
                self.fill(first_timeout)
        except SideError:
            return None
        deadline = time.monotonic() + head_timeout
        while True:
            if self.buf[:1] in (b"\r", b"\n"):
                del self.buf[:len(self.buf) - len(self.buf.lstrip(b"\r\n"))]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[:end + 4]
                return head
            too_big(self.buf)
            left = deadline - time.monotonic()
            if left <= 0:
                raise HeadTooSlow()
            try:
                self.fill(left)
            except SideError as e:
                if e.kind == "timeout":
                    raise HeadTooSlow() from None
                raise

    def until_blank_line(self, limit, timeout):
        """The bytes up to the next blank line (CRLF CRLF), without it: a response head. More than
        ``limit`` bytes without one is a bad message; a silence of ``timeout`` is a timeout."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            deadline = time.monotonic() + timeout
            while end < 0:
                if len(buf) > limit:
                    raise SideError(self.side, "malformed")
                self.fill(max(0.001, deadline - time.monotonic()))
                end = buf.find(b"\r\n\r\n")
        head = bytes(buf[:end])
        del buf[:end + 4]
        return head

    def take(self, n, timeout):
        """At most ``n`` bytes (at least one): buffered ones first, else one read."""
        if not self.buf:
            self.fill(timeout)
        piece = bytes(self.buf[:n])
        del self.buf[:n]
        return piece

    def take_all(self, n):
        """The first ``n`` bytes of the buffer, which holds at least that many."""
        buf = self.buf
        if len(buf) == n:
            piece = bytes(buf)
            buf.clear()
            return piece
        piece = bytes(buf[:n])
        del buf[:n]
        return piece

    def line(self, limit, timeout):
        """One CRLF-ended line without its CRLF; a line longer than ``limit`` is a bad message."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return line
            if len(self.buf) > limit:
                raise SideError(self.side, "malformed")
            self.fill(timeout)


def relay_length(reader, n, out, timeout):
    """Pass exactly ``n`` body bytes from ``reader`` to ``out(bytes)``; returns ``n``."""
    left = n
    while left > 0:
        piece = reader.take(min(left, PIECE), timeout)
        out(piece)
        left -= len(piece)
    return n


def relay_chunked(reader, out, timeout, *, chunked_out=True):
    """Pass a chunked body from ``reader`` to ``out``, decoded and framed again (chunk by
    chunk when ``chunked_out``, else as plain bytes); trailers are read and dropped.
    Returns the count of body bytes. A chunk size that is not hex is a bad message."""
    total = 0
    while True:
        size_line = reader.line(4096, timeout).split(b";", 1)[0].strip()
        if not size_line or len(size_line) > 15 or size_line.strip(b"0123456789abcdefABCDEF"):
            raise SideError(reader.side, "malformed")
        size = int(size_line, 16)
        if size == 0:
            while reader.line(8192, timeout):
                pass
            if chunked_out:
                out(b"0\r\n\r\n")
            return total
        if chunked_out:
            out(b"%x\r\n" % size)
        relay_length(reader, size, out, timeout)
        if reader.line(2, timeout) != b"":
            raise SideError(reader.side, "malformed")
        if chunked_out:
            out(b"\r\n")
        total += size


def relay_until_close(reader, out, timeout, *, chunked_out):
    """Pass a body that ends when ``reader``'s peer closes; framed in chunks when
    ``chunked_out``. Returns the count of body bytes."""
    total = 0
    while True:
        try:
            piece = reader.take(PIECE, timeout)
        except SideError as e:
            if e.kind != "closed":
                raise
            if chunked_out:
                out(b"0\r\n\r\n")
            return total
        out(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked_out else piece)
        total += len(piece)
