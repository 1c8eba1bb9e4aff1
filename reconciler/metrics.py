"""The reconciler's metrics, served on its API port at ``/metrics`` (a token: any role's, ``read``
being enough, or the metrics token of :func:`corral.auth.metrics_token`).

Counted where they happen: sync and planner pass durations, apply latency (an apply that changed
an app to its rollout complete), placements by reason
(``replacement`` of an instance lost with its node, ``rollout``, ``scale_up``),
evictions (rows stopped) by reason, API requests by method, route and code with
their duration, bus messages accepted by type, GitOps sync durations by source.

Read at each scrape (:class:`ClusterCollector`): leadership and epoch, the work
queues' depth, nodes by state, instances desired, running and ready per app, rollouts
in progress and stuck, the
bus's rejected (by reason) and dropped messages, each GitSource's last successful
sync. A collector that cannot reach the store leaves those series out of that scrape.
"""
import collections
import functools
import re

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from corral.metrics import LONG_BUCKETS, SHORT_BUCKETS, ScrapeCollector, new_registry
from corral.store import StoreError

STOP_KINDS = ("node_lost", "rollout", "scaled_down", "drain", "deleted", "process_removed", "other")
PLACEMENT_KINDS = ("replacement", "rollout", "scale_up")
NODE_STATES = ("ready", "unreachable", "lost")


@functools.lru_cache(maxsize=256)
def route_label(pattern):
    """The ``route`` label of an API route's pattern: ``/v1/apps/{name}`` for
    ``/v1/apps/(?P<name>[^/]+)``; ``other`` for a request that matched no route. Pure."""
    if pattern is None:
        return "other"
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


def stop_kind(stop):
    """The ``reason`` label of a planner :class:`~reconciler.planner.Stop` (its reason is a sentence). Pure."""
    why = stop.reason
    if stop.node_lost:
        return "node_lost"
    if why.startswith("replaced by revision"):
        return "rollout"
    if why.startswith("scaled down"):
        return "scaled_down"
    if why.endswith("is draining"):
        return "drain"
    if why in ("app no longer exists", "app is being deleted"):
        return "deleted"
    if why.startswith("process ") and why.endswith("removed from the spec"):
        return "process_removed"
    return "other"


def rollout_state(status):
    """``rolling``, ``stuck`` or ``done`` (or None: no rollout yet) of an app's stored status, from its
    ``Progressing`` condition (reconciler/status.py). Pure."""
    for cond in status.get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == "Progressing":
            if cond.get("status") == "False":
                return "stuck"
            return "rolling" if cond.get("reason") == "Rolling" else "done"
    return None


def plan_counts(plan, rows):
    """``(placements by reason, evictions by reason)`` of a plan, two Counters. ``rows``: the desired
    rows the plan was made from (a stop names a row id). A boot of a process that also lost rows
    with a node is a replacement, one that goes with stops of an older revision a rollout step,
    the rest scale-ups. Pure."""
    evictions = collections.Counter(stop_kind(s) for s in plan.stop)
    key_of = {r.id: (r.app, r.process) for r in rows}
    stopped = collections.defaultdict(collections.Counter)   # (app, process) -> {kind: n}
    for s in plan.stop:
        if s.id in key_of:
            stopped[key_of[s.id]][stop_kind(s)] += 1
    booted = collections.Counter((r.app, r.process) for r in plan.boot)
    placements = collections.Counter()
    for key, n in booted.items():
        lost = min(n, stopped[key]["node_lost"])
        rolled = min(n - lost, stopped[key]["rollout"])
        placements.update({"replacement": lost, "rollout": rolled, "scale_up": n - lost - rolled})
    return +placements, evictions


class ReconcilerMetrics:
    """One reconciler's registry and the metric objects its duties count into."""

    def __init__(self):
        self.registry = new_registry()
        r = self.registry
        self.sync_seconds = Histogram("corral_reconciler_sync_duration_seconds",
                                      "How long one sync of the apps due took (leader)", buckets=SHORT_BUCKETS,
                                      registry=r)
        self.plan_seconds = Histogram("corral_reconciler_planner_duration_seconds", "How long one planner pass took",
                                      buckets=SHORT_BUCKETS, registry=r)
        self.placements = Counter("corral_reconciler_placements", "Instances placed on a node, by reason",
                                  ["reason"], registry=r)
        self.evictions = Counter("corral_reconciler_evictions", "Instances taken off a node, by reason",
                                 ["reason"], registry=r)
        for kind in PLACEMENT_KINDS:
            self.placements.labels(kind)
        for kind in STOP_KINDS:
            self.evictions.labels(kind)
        self.requests = Counter("corral_reconciler_api_requests", "API requests answered, by method, route and code",
                                ["method", "route", "code"], registry=r)
        self.request_seconds = Histogram("corral_reconciler_api_request_duration_seconds",
                                         "How long the API took to answer (a stream: to start it)",
                                         ["method", "route"], buckets=SHORT_BUCKETS, registry=r)
        self.messages = Counter("corral_reconciler_bus_messages", "Bus messages accepted, by type", ["type"],
                                registry=r)
        self.apply_seconds = Histogram("corral_reconciler_apply_duration_seconds",
                                       "From an apply that changed an app to its rollout complete (leader; once per "
                                       "generation)", buckets=LONG_BUCKETS, registry=r)
        self.gitops_seconds = Histogram("corral_reconciler_gitops_sync_duration_seconds",
                                        "How long one GitSource's sync took (fetch, plan, apply)", ["source"],
                                        buckets=LONG_BUCKETS, registry=r)

    def watch(self, reconciler):
        """Read ``reconciler``'s state at each scrape (:class:`ClusterCollector`)."""
        self.registry.register(ClusterCollector(reconciler))

    def planned(self, seconds, plan, rows):
        """A planner pass took ``seconds`` and decided ``plan`` from the desired ``rows``."""
        self.plan_seconds.observe(seconds)
        placements, evictions = plan_counts(plan, rows)
        for kind, n in placements.items():
            self.placements.labels(kind).inc(n)
        for kind, n in evictions.items():
            self.evictions.labels(kind).inc(n)

    def rollouts_completed(self, prepared, status_events, now, measured):
        """Observe, for each app whose rollout completed in this pass (a ``RolloutComplete`` among
        ``status_events``), the time since the apply that changed it: once per generation
        (``measured``: app -> generation observed, kept by the caller; a rollout that completes
        again after a node loss is no apply)."""
        done = {e[1] for e in status_events if e[2] == "RolloutComplete"}
        for p in prepared:
            rec = p.record
            if rec.name in done and measured.get(rec.name) != rec.generation and rec.applied_at:
                measured[rec.name] = rec.generation
                self.apply_seconds.observe(max(0.0, now - rec.applied_at))

    def answered(self, method, route, code, seconds):
        """The API answered ``method`` on ``route`` (its pattern, or ``other``) with ``code``."""
        self.requests.labels(method, route, str(code)).inc()
        self.request_seconds.labels(method, route).observe(seconds)


class ClusterCollector(ScrapeCollector):
    """Reads one reconciler's lease, queues, observed view, bus counters and store when scraped
    (``source``: the :class:`~reconciler.daemon.Reconciler`)."""

    def collect(self):
        r = self.source
        epoch = r.lease.epoch
        yield GaugeMetricFamily("corral_reconciler_leader", "1 while this reconciler holds the leader lease",
                                value=int(epoch is not None))
        yield GaugeMetricFamily("corral_reconciler_epoch", "The epoch this reconciler leads at (0 when it does not)",
                                value=epoch or 0)
        g = GaugeMetricFamily("corral_reconciler_queue_depth", "Keys waiting in a work queue", labels=["queue"])
        g.add_metric(["apps"], len(r.work))
        g.add_metric(["gitsources"], len(r.sources))
        yield g
        yield from self._bus(r.bus.stats())
        try:
            yield from self._cluster()
        except StoreError:
            return

    @staticmethod
    def _bus(stats):
        c = CounterMetricFamily("corral_reconciler_bus_rejected_messages", "Bus messages dropped on arrival, by reason",
                                labels=["reason"])
        for reason, n in sorted(stats.get("rejected", {}).items()):
            c.add_metric([reason], n)
        yield c
        yield CounterMetricFamily("corral_reconciler_bus_sent_messages", "Bus messages sent", value=stats.get("sent", 0))
        yield CounterMetricFamily("corral_reconciler_bus_dropped_messages",
                                  "Bus messages that could not be sent (a node gone or stuck)",
                                  value=stats.get("dropped", 0))

    def _cluster(self):
        r = self.source
        nodes = collections.Counter(n["state"] for n in r.state.nodes())
        g = GaugeMetricFamily("corral_reconciler_nodes", "Nodes by state", labels=["state"])
        for state in sorted(set(NODE_STATES) | set(nodes)):
            g.add_metric([state], nodes.get(state, 0))
        yield g
        desired = collections.Counter(row.app for row in r.store.list_desired())
        insts = r.state.instances()
        running = collections.Counter(i["app"] for i in insts if i.get("state") == "running")
        ready = collections.Counter(i["app"] for i in insts if i.get("ready"))
        records = r.store.list_apps()
        apps = sorted(set(desired) | set(running) | {rec.name for rec in records})
        for name, help_, counts in (("desired", "Instances the desired table holds, by app", desired),
                                    ("running", "Instances reported running, by app", running),
                                    ("ready", "Instances reported ready, by app", ready)):
            g = GaugeMetricFamily(f"corral_reconciler_instances_{name}", help_, labels=["app"])
            for app in apps:
                g.add_metric([app], counts.get(app, 0))
            yield g
        rollouts = collections.Counter(rollout_state(rec.status) for rec in records)
        g = GaugeMetricFamily("corral_reconciler_rollouts", "Apps by the state of their rollout "
                              "(rolling: in progress; stuck: failed, or blocked by a build or by room)",
                              labels=["state"])
        for state in ("rolling", "stuck"):
            g.add_metric([state], rollouts.get(state, 0))
        yield g
        g = GaugeMetricFamily("corral_reconciler_gitops_last_success_timestamp_seconds",
                              "When a GitSource last synced to its end (seconds since the epoch)", labels=["source"])
        for rec in r.store.list_gitsources():
            if isinstance(rec.status.get("lastSynced"), (int, float)):
                g.add_metric([rec.name], rec.status["lastSynced"])
        yield g
