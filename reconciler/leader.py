"""The leader lease, held in the store, and the epoch that fences its holder.

Both reconcilers call :meth:`LeaderLease.tick` every ``lease_renew`` seconds.
Whoever holds the lease runs the loop; its epoch goes on every command and
every write of desired state. A lease alone does not fence (a frozen leader
wakes up still believing it leads): the store refuses writes with an old
epoch and agents refuse commands with one. The local validity below is only
there so that a leader that cannot reach the store stops acting on its own
before the lease can have passed to someone else.

An older reconciler never leads a store whose schema a newer one migrated
(the store refuses it the lease, :class:`corral.store.NewerSchema`): it says
so once in its log and keeps serving the API, which reads and writes that
schema as well as its own (migrations within one minor release only add).
"""
import logging
import os
import secrets
import time

import corral
from corral.store import NewerSchema, StoreError
from corral.store.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

LEASE = "leader"


def process_holder(name, pid=None, nonce=None):
    """The lease holder id of this reconciler process: its name, pid and a random nonce.

    One per process, so that a reconciler restarted within the lease's time,
    or a second one started with the same name by mistake, never renews a
    lease that it did not take itself: it waits for the lease to end and
    takes it at a new epoch, which fences whatever the old process had sent
    (Kubernetes' leader election holds ``hostname_<uuid>`` for the same
    reason). Pure when ``pid`` and ``nonce`` are given.
    """
    return f"{name}/{os.getpid() if pid is None else pid}-{secrets.token_hex(4) if nonce is None else nonce}"


class LeaderLease:
    """Takes and renews the ``leader`` lease; says whether we lead, and at which epoch."""

    def __init__(self, store, holder, timings, clock=time.monotonic):
        self.store = store
        self.holder = holder
        self.timings = timings
        self.clock = clock
        self._epoch = None
        self._valid_until = 0.0
        self.refused = None   # the NewerSchema that keeps us from leading, once said

    def tick(self):
        """Try to take or renew the lease once; return the epoch if we lead now."""
        asked = self.clock()
        try:
            lease = self.store.acquire_lease(LEASE, self.holder, self.timings.lease_ttl)
        except NewerSchema as e:
            if self.refused is None or self.refused.store != e.store:
                log.error("%s will not lead: the store's schema is version %d, newer than this corral's %d "
                          "(corral %s); upgrade this reconciler", self.holder, e.store, e.code, corral.__version__)
            self.refused, self._epoch, self._valid_until = e, None, 0.0
            return None
        except StoreError as e:
            log.warning("lease renewal failed: %s", e)
            return self.epoch
        self.refused = None
        if lease is None:
            if self._epoch is not None:
                log.warning("%s lost the leader lease", self.holder)
            self._epoch, self._valid_until = None, 0.0
        else:
            if self._epoch != lease.epoch:
                log.info("%s leads at epoch %d", self.holder, lease.epoch)
            # Counted from before the request: the store's expiry is at least this late.
            self._epoch, self._valid_until = lease.epoch, asked + self.timings.lease_ttl - self.timings.lease_renew
        return self.epoch

    @property
    def store_schema(self):
        """The store's schema version as the lease last found it, without asking the store (a health
        check must answer while the store does not): that of a newer schema that refused us the lease,
        else this corral's (the reconciler migrated the store to it when it started)."""
        return self.refused.store if self.refused is not None else SCHEMA_VERSION

    @property
    def epoch(self):
        """Our epoch while the lease is surely ours, else None."""
        if self._epoch is not None and self.clock() < self._valid_until:
            return self._epoch
        return None

    def release(self):
        """Give the lease up (clean shutdown), so the other reconciler takes over at once."""
        if self._epoch is not None:
            try:
                self.store.release_lease(LEASE, self.holder)
            except StoreError:
                pass
        self._epoch, self._valid_until = None, 0.0
