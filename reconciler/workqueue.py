"""The leader's work queue, keyed by app name (Kubernetes' workqueue, in small).

Event handlers only :meth:`WorkQueue.add` a key; the worker takes every key
that is due with :meth:`WorkQueue.take`, syncs them, and calls
:meth:`WorkQueue.done` for each. The rules, as client-go keeps them:

- a key is queued at most once however often it is added (events collapse);
- a key being worked is never handed out again until it is done; an add
  meanwhile marks it dirty, and ``done`` queues it again (so no event is lost
  and no app is ever worked twice at once);
- a failed sync :meth:`retry` s the key after a per-key backoff that doubles
  (``base * 2**failures``, capped); a successful one :meth:`forget` s it.

No clock is read here: every method that needs the time takes ``now``. The
daemon wakes the worker when something is added (see reconciler/daemon.py).
"""


class WorkQueue:
    """Keys to sync, with per-key exponential backoff for retries."""

    def __init__(self, base_delay=0.05, max_delay=30.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue = []          # keys ready to hand out, in order of arrival
        self._dirty = set()       # keys queued or to be requeued when done
        self._processing = set()  # keys handed out and not yet done
        self._delayed = {}        # key -> earliest time to queue it again
        self._failures = {}       # key -> syncs failed in a row

    def add(self, key):
        """Ask for ``key`` to be synced (again); a no-op when it is already queued."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)

    def add_all(self, keys):
        """:meth:`add` each of ``keys``."""
        for key in keys:
            self.add(key)

    def retry(self, key, now):
        """Queue ``key`` again after its backoff, which doubles with each failure in a row.

        Worked example with base 0.05 s and cap 30 s: the 1st failure waits
        0.05 s, the 2nd 0.1 s, the 5th 0.8 s, the 11th and later 30 s.
        """
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        when = now + min(self.max_delay, self.base_delay * (2 ** n))
        self._delayed[key] = min(when, self._delayed.get(key, when))

    def forget(self, key):
        """Reset ``key``'s backoff (its sync succeeded)."""
        self._failures.pop(key, None)

    def backing_off(self, key):
        """Whether ``key`` waits for the backoff of a failed sync (a periodic resync leaves it waiting)."""
        return key in self._delayed

    def failures(self, key):
        """How many syncs of ``key`` failed in a row."""
        return self._failures.get(key, 0)

    def take(self, now):
        """Every key due now (retries whose backoff ended included), marked as being worked."""
        for key, when in sorted(self._delayed.items(), key=lambda kv: kv[1]):
            if when <= now:
                del self._delayed[key]
                self.add(key)
        keys, self._queue = self._queue, []
        for key in keys:
            self._dirty.discard(key)
            self._processing.add(key)
        return keys

    def done(self, key):
        """``key`` is no longer worked; if it was added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)

    def wait_hint(self, now, longest, leading=True):
        """Seconds the worker may sleep: 0 when work is queued, else until the next
        retry is due, at most ``longest``. A worker that is not ``leading`` takes no
        work, so what is queued does not shorten its sleep: ``longest`` (it would
        otherwise wake at once, again and again, and spin a core while it follows)."""
        if not leading:
            return longest
        if self._queue:
            return 0.0
        if not self._delayed:
            return longest
        return max(0.0, min(longest, min(self._delayed.values()) - now))

    def __len__(self):
        return len(self._queue) + len(self._delayed)
