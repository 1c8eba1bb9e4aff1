"""What the API asks a reconciler about the cluster: the observed view merged with the store."""
import time

from reconciler import views
from reconciler.routes import derive_routes


class ClusterState:
    """Read-only answers for the API's live routes (``/healthz``, instances, nodes)."""

    def __init__(self, name, store, observed, lease, timings, clock=time.time, bus_stats=dict, credential=None):
        self.name, self.store, self.observed, self.lease, self.timings, self.clock = \
            name, store, observed, lease, timings, clock
        self.bus_stats = bus_stats
        self.credential = credential   # node name -> "own key" | "revoked" | "cluster key"; None: a cleartext bus

    def _node_views(self):
        stored = self.store.list_nodes()
        desired = self.store.list_desired()
        return stored, desired, self.observed.node_views(stored, desired, self.clock(), self.timings)

    def health(self):
        """Name, leadership, and what this reconciler's bus refused (``rejected_messages``, by reason)
        and dropped: the counts that show a peer sending garbage or replays."""
        stats = self.bus_stats()
        return {"name": self.name, "leader": self.lease.epoch is not None, "epoch": self.lease.epoch,
                "rejected_messages": stats.get("rejected", {}), "dropped_messages": stats.get("dropped", 0)}

    def instances(self):
        _, desired, node_views = self._node_views()
        return views.instances_json(desired, self.observed.instance_reports(),
                                    {v.name: v.state for v in node_views})

    def nodes(self):
        stored, desired, node_views = self._node_views()
        return views.nodes_json(node_views, stored, self.observed.reports(), desired, self.observed.last_seen,
                                self.credential or (lambda name: "cluster key"))

    def routes(self, domain):
        """The route table ``{(host, path): Route}`` this reconciler derives now
        (:func:`reconciler.routes.derive_routes`; apps without routes are served at APP.``domain``)."""
        _, desired, node_views = self._node_views()
        return derive_routes(self.store.list_apps(), desired, self.observed.instance_reports(),
                             {v.name: v.state for v in node_views}, domain)
