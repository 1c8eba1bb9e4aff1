"""How a daemon learns that it must stop: one mechanism for the reconciler, the agent and the builder.

A signal handler may only record that a signal came (Python runs it between
two bytecodes of the main thread, wherever that is: inside the hub, inside a
green thread); every loop of the daemon asks :class:`Stop` between steps and
the main green thread waits on it by polling, so no handler ever touches
eventlet. Which signal came first matters to the agent (SIGINT stops its
instances, SIGTERM leaves them for the next agent), so the signals are kept in
order.
"""
import contextlib
import signal
import time

import eventlet

POLL = 0.1   # seconds between looks at the flag while waiting for a signal
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """The stop signals received, in order; calling it answers whether to stop.

    ``early``: a list that handlers installed before the daemon was up append
    to (``corral agent`` catches a stop asked while it imports); it is honoured
    once the daemon is up, and kept as this object's own list.
    """

    def __init__(self, early=None):
        self.signals = early if early is not None else []

    def __call__(self):
        return bool(self.signals)

    def set(self, signum=signal.SIGTERM, frame=None):
        """Ask to stop (a signal handler's signature; the default stands for a plain request)."""
        self.signals.append(signum)

    @property
    def first(self):
        """The signal that asked first, or None while running."""
        return self.signals[0] if self.signals else None

    @contextlib.contextmanager
    def catching(self, signals=SIGNALS):
        """Record ``signals`` here while the block runs; the previous handlers come back after it."""
        previous = {s: signal.signal(s, self.set) for s in signals}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def wait(self, poll=POLL):
        """Block this green thread until a stop is asked."""
        while not self.signals:
            eventlet.sleep(poll)

    def sleep(self, seconds, poll=POLL):
        """Sleep ``seconds``, or less if a stop is asked meanwhile; returns whether one was."""
        deadline = time.monotonic() + seconds
        while not self.signals:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            eventlet.sleep(min(poll, left))
        return True
