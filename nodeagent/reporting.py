"""What the agent sends each reconciler at a heartbeat: the full report, or an ``alive`` (pure).

A full report (node facts and every instance: about 1.5 kB for three
instances) to every reconciler every heartbeat is what a slow link, or a
reconciler with thousands of nodes, pays for a node where nothing changed.
So, as Kubernetes split the node's lease from its status, a heartbeat where
nothing changed is an ``alive``: the agent process, a sequence number, the
epoch seen and the :func:`corral.nodereport.digest` of the report it stands
for, about 130 bytes of body.

The full report goes to a reconciler when

- what it says changed (its digest: instances, or stable node facts),
- that reconciler has not acked this report (``ack``: it answers every full
  report, and any ``alive`` that names a report it does not keep; one that
  keeps none, as after its restart, gets the full report at once, not a
  heartbeat later; and one the agent could not reach gets it first when back), or
- ``refresh`` seconds passed since the last one sent there, so that volatile
  facts (load, free disk) stay that fresh in ``get nodes``.

A reconciler that never acks (one of 0.1.0, which refuses ``alive``)
gets every heartbeat in full, as before.
"""
import dataclasses

REFRESH = 10.0   # seconds: a full report to each reconciler at least this often


@dataclasses.dataclass
class _Peer:
    acked: tuple = None        # (started_at, digest) of the reconciler's last ack
    full_at: float = None      # when the last full report was sent there


class Reporting:
    """Per reconciler endpoint, whether the next heartbeat is full; fed the acks."""

    def __init__(self, refresh=REFRESH):
        self.refresh = refresh
        self._peers = {}

    def on_ack(self, endpoint, body, started_at):
        """Keep what reconciler ``endpoint`` says it holds (a verified ``ack``); True when it holds
        no report of this agent process (``started_at``): one that has just started, which should
        get the full report now rather than at the next heartbeat."""
        self._peers.setdefault(endpoint, _Peer()).acked = (body["started_at"], body["digest"])
        return body["digest"] is None or body["started_at"] != started_at

    def unsent(self, endpoint):
        """A message to ``endpoint`` could not go (not connected: it may be restarting): what it
        acked is forgotten, so that the first message it gets once back is the full report."""
        self._peers.pop(endpoint, None)

    def messages(self, endpoint, body, digest, now):
        """The ``(type, body)`` to send ``endpoint`` for the report ``body`` (with its
        ``digest``): an ``alive`` when that reconciler acked a report of this digest from
        this agent process within ``refresh`` seconds, else the full report."""
        peer = self._peers.setdefault(endpoint, _Peer())
        if peer.acked == (body["started_at"], digest) and peer.full_at is not None \
                and now - peer.full_at < self.refresh:
            return "alive", {"started_at": body["started_at"], "seq": body["seq"],
                             "epoch_seen": body["epoch_seen"], "digest": digest}
        peer.full_at = now
        return "report", body

