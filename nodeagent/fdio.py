"""Reading and writing raw non-blocking fds (pipes, ptys) from green threads.

eventlet's green ``os.read``/``os.write`` and the green pipes of a patched
``subprocess`` misbehave at the edges that matter here: a write to a pipe
whose reader has exited spins for ever instead of raising BrokenPipeError
(an agent fetching an image hung when ``tar`` stopped early), and a green
read answers ``''`` (a str) when the hub believes a reused fd number is
closed. These helpers use the original ``os`` functions, wait with
``trampoline`` themselves, and tell the hub when an fd is closed.
"""
import errno
import os

import eventlet.hubs
import eventlet.patcher

_os = eventlet.patcher.original("os")


def read_some(fd, size):
    """Bytes from non-blocking ``fd`` once there are some (green wait); b"" at end of file
    (a pty whose other side is all closed reads as EIO: also the end)."""
    while True:
        try:
            return _os.read(fd, size)
        except BlockingIOError:
            eventlet.hubs.trampoline(fd, read=True)
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise


def write_all(fd, data):
    """Write all of ``data`` to non-blocking ``fd`` (green wait); False when the reader is gone."""
    view = memoryview(data)
    while view:
        try:
            n = _os.write(fd, view)
        except BlockingIOError:
            eventlet.hubs.trampoline(fd, write=True)
            continue
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                return False
            raise
        view = view[n:]
    return True


def close_fd(fd):
    """Close ``fd`` and tell the hub, so that the next fd with its number starts clean."""
    eventlet.hubs.notify_close(fd)
    os.close(fd)
