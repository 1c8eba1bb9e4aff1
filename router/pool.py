"""Keep-alive connections to backends, at most ``size`` idle ones per backend (by its id: an
instance that a new one replaces at the same address and port is another backend).

A pooled connection the backend has closed meanwhile (its own keep-alive
timeout, or the backend died) is found before use by a non-blocking peek: it
reads as EOF, or as bytes nobody asked for, and is dropped. Without the peek, a
request on such a connection would fail, and one that may not be sent twice
(a POST) would fail for good.
"""
import socket

import eventlet

CLOSE_BATCH = 100   # idle connections closed between two turns of the hub


def _alive(conn):
    """True when ``conn`` (a :class:`router.connections.Conn`) is open and has nothing unread: the
    peek would block."""
    try:
        conn.raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)   # b"" (closed) or unasked-for bytes
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def _close_all(socks):
    """Close ``socks``, letting the hub run between batches."""
    for i in range(0, len(socks), CLOSE_BATCH):
        if i:
            eventlet.sleep(0)
        for sock in socks[i:i + CLOSE_BATCH]:
            sock.close()


class Pool:
    """Idle keep-alive connections by backend id."""

    def __init__(self, size=32):
        self.size = size
        self._idle = {}

    def get(self, backend, peek=True):
        """An idle connection to ``backend``, or None; with ``peek``, one that is still open.
        The router peeks only for a request it may not send twice: one it may is sent again
        on another connection when this one turns out closed, and saves the system call."""
        idle = self._idle.get(backend.id)
        while idle:
            sock = idle.pop()
            if not peek or _alive(sock):
                return sock
            sock.close()
        return None

    def put(self, backend, sock):
        """Keep ``sock`` for the next request to ``backend``, or close it when the pool is full."""
        idle = self._idle.get(backend.id)
        if idle is None:
            idle = self._idle[backend.id] = []
        if len(idle) < self.size:
            idle.append(sock)
        else:
            sock.close()

    def drop(self, backend):
        """Close every idle connection to ``backend`` (one of them failed: the rest likely will)."""
        for sock in self._idle.pop(backend.id, ()):
            sock.close()

    def keep_only(self, ids):
        """Take out the idle connections of every backend whose id is not in ``ids`` (gone from
        the table), and close them in a green thread of their own, :data:`CLOSE_BATCH` at a time
        with requests served between batches: a table that replaced 3,000 backends closed their
        3,000 connections in one go, 80 ms in which the worker served no one."""
        gone = [sock for key in [k for k in self._idle if k not in ids] for sock in self._idle.pop(key)]
        if gone:
            eventlet.spawn_n(_close_all, gone)

    def idle_count(self):
        """How many idle connections the pool holds."""
        return sum(len(v) for v in self._idle.values())
