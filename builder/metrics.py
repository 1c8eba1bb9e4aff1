"""The builder's metrics: builds by result, their duration in all and by phase, layer cache hits by
kind (counted by the worker as each build ends), and the build queue as the store holds it (read at
each scrape: several builders share one queue, so no builder could count it alone).
"""
import eventlet.semaphore
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from corral.metrics import LONG_BUCKETS, ScrapeCollector, new_registry
from corral.store import StoreError

RESULTS = ("succeeded", "failed", "abandoned")
ANSWERS = ("served", "unauthorized", "forbidden", "missing")   # a layer request's answer: 200, 401, 403, 404
PHASES = ("fetch", "resolve", "code", "install")
BUILD_STATES = ("queued", "building", "succeeded", "failed")


class BuilderMetrics:
    """One builder's registry and the metric objects its worker counts into. ``store`` (a connection
    of the scrape's own, or None) is read for the queue at each scrape."""

    def __init__(self, store=None):
        self.registry = new_registry()
        r = self.registry
        self.builds = Counter("corral_builder_builds", "Builds this builder ended, by result", ["result"], registry=r)
        for result in RESULTS:
            self.builds.labels(result)
        self.duration = Histogram("corral_builder_build_duration_seconds", "How long a build took, claim to outcome",
                                  ["result"], buckets=LONG_BUCKETS, registry=r)
        self.phases = Histogram("corral_builder_build_phase_duration_seconds", "How long one phase of a build took",
                                ["phase"], buckets=LONG_BUCKETS, registry=r)
        self.layers = Counter("corral_builder_layer_cache", "Layers a build needed, found built (hit) or made (miss)",
                              ["kind", "result"], registry=r)
        for kind in ("env", "code"):
            for result in ("hit", "miss"):
                self.layers.labels(kind, result)
        self.requests = Counter("corral_builder_layer_requests",
                                "Layer requests by answer: served, unauthorized (no credential), forbidden "
                                "(a credential for another layer or node, forged or expired), missing",
                                ["answer"], registry=r)
        for answer in ANSWERS:
            self.requests.labels(answer)
        if store is not None:
            self.registry.register(QueueCollector(store))

    def answered(self, answer):
        """A layer request got ``answer`` (one of :data:`ANSWERS`)."""
        self.requests.labels(answer).inc()

    def ended(self, result, seconds, phases=None, layer_hits=None):
        """A build ended with ``result`` (one of :data:`RESULTS`) after ``seconds``; ``phases``: seconds
        by phase; ``layer_hits``: ``{kind: found built}``."""
        self.builds.labels(result).inc()
        self.duration.labels(result).observe(seconds)
        for phase, took in (phases or {}).items():
            if isinstance(took, (int, float)):
                self.phases.labels(phase).observe(took)
        for kind, hit in (layer_hits or {}).items():
            self.layers.labels(kind, "hit" if hit else "miss").inc()


class QueueCollector(ScrapeCollector):
    """``corral_builder_builds_in_state{state}`` from the store (``source``) at each scrape, one scrape
    at a time on its connection; nothing when the store does not answer."""

    def __init__(self, store):
        super().__init__(store)
        self.lock = eventlet.semaphore.Semaphore()

    def collect(self):
        try:
            with self.lock:
                counts = self.source.count_builds()
        except StoreError:
            return
        g = GaugeMetricFamily("corral_builder_builds_in_state",
                              "Builds in the shared queue by state (queued is the queue's depth)", labels=["state"])
        for state in BUILD_STATES:
            g.add_metric([state], counts.get(state, 0))
        yield g
