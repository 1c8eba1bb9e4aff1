"""The layer keys as a daemon holds them: read from the store, kept a while, read again on a miss.

The leader signs with the newest key; a builder checks with the newest two
(:func:`corral.layer_access.check`). Both read them through a
:class:`LayerKeyRing`, which asks the store at most every ``refresh`` seconds,
and sooner (but not more than once every ``retry`` seconds, so a flood of bad
credentials cannot flood the store) when a builder meets a signature that no
key it holds explains: a key rotated a moment ago is then seen at once.
"""
import logging
import time

from corral.store.base import StoreError

log = logging.getLogger("corral.layers")


class LayerKeyRing:
    """The store's newest layer keys, cached. ``store`` has ``layer_keys()``. While the store
    cannot be read, the keys held are kept (StoreError only when none are held yet)."""

    def __init__(self, store, refresh=60.0, retry=5.0, clock=time.monotonic):
        self.store = store
        self.refresh = refresh
        self.retry = retry
        self.clock = clock
        self._keys = []      # [(generation, bytes)], newest first
        self._read_at = None

    def _read(self, due):
        now = self.clock()
        if self._read_at is None or now - self._read_at >= due:
            try:
                self._keys = list(self.store.layer_keys())
            except StoreError as exc:
                if not self._keys:
                    raise
                log.warning("the layer keys could not be read again (the ones held are kept): %s", exc)
            self._read_at = now
        return self._keys

    def signing(self):
        """The newest key (bytes): what a leader signs with. StoreError when the store cannot say."""
        return self._read(self.refresh)[0][1]

    def generation(self):
        """The newest key's generation (a rotation makes it grow). StoreError when the store cannot say."""
        return self._read(self.refresh)[0][0]

    def checking(self, missed=False):
        """The keys a signature may be made with (bytes, newest first); ``missed``: the last check
        failed with the keys held, so read them again if ``retry`` seconds have passed."""
        keys = self._read(self.retry if missed else self.refresh)
        return [key for _, key in keys]
