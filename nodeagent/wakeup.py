"""A doorbell for green threads."""
import eventlet.queue


class Wakeup:
    """A one-slot doorbell for green threads: ``ring`` coalesces, ``wait`` sleeps until rung or timeout."""

    def __init__(self):
        self._q = eventlet.queue.LightQueue(maxsize=1)

    def ring(self):
        """Wake the waiter (rings while one is pending collapse into one)."""
        try:
            self._q.put_nowait(True)
        except eventlet.queue.Full:
            pass

    def wait(self, timeout):
        """Sleep until rung or ``timeout`` seconds; True when rung."""
        try:
            self._q.get(timeout=timeout)
            return True
        except eventlet.queue.Empty:
            return False
