"""The agent's metrics: what it counts as things happen, and what it reads from the node when scraped.

Counted where they happen (the worker, the image cache):
``corral_agent_restarts_total{reason}`` (``exited``, ``liveness``, ``oom_killed``),
``corral_agent_probes_total{result}`` and ``corral_agent_probe_duration_seconds``,
``corral_agent_image_fetches_total{result}``, ``corral_agent_image_fetch_bytes_total`` and
``corral_agent_image_fetch_duration_seconds``.

Read at each scrape (:class:`NodeCollector`, nothing kept between scrapes):
instances by app and state, ready instances, each instance's memory and CPU as
the kernel counts them (:meth:`nodeagent.cgroupfs.MemoryCgroups.usage`), free and
total disk of the data and images folders, the messages the agent dropped by
reason (the bus's counters and the agent's own), the highest epoch seen and the
log and exec streams open.
"""
import collections

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from corral.metrics import LONG_BUCKETS, SHORT_BUCKETS, ScrapeCollector, new_registry
from nodeagent import disk, facts
from nodeagent.lifecycle import State

RESTART_REASONS = ("exited", "liveness", "oom_killed")


def restart_reason(why, oom_killed):
    """The ``reason`` label of a restart: the kernel's OOM kill, a failed liveness check, or an exit. Pure."""
    return "oom_killed" if oom_killed else "liveness" if why else "exited"


class AgentMetrics:
    """One agent's registry and the metric objects its shell counts into."""

    def __init__(self):
        self.registry = new_registry()
        r = self.registry
        self.restarts = Counter("corral_agent_restarts", "Instance restarts by the agent, by reason",
                                ["reason"], registry=r)
        for reason in RESTART_REASONS:
            self.restarts.labels(reason)
        self.probes = Counter("corral_agent_probes", "Health checks run, by result", ["result"], registry=r)
        self._probe_results = {ok: self.probes.labels("success" if ok else "failure") for ok in (True, False)}
        self.probe_seconds = Histogram("corral_agent_probe_duration_seconds", "How long one health check took",
                                       buckets=SHORT_BUCKETS, registry=r)
        self.fetches = Counter("corral_agent_image_fetches", "Images fetched from a builder, by result",
                               ["result"], registry=r)
        for result in ("success", "failure"):
            self.fetches.labels(result)
        self.fetch_bytes = Counter("corral_agent_image_fetch_bytes", "Bytes of layer archives fetched",
                                   registry=r)
        self.fetch_seconds = Histogram("corral_agent_image_fetch_duration_seconds",
                                       "How long making an image ready took (download, verify, unpack)",
                                       buckets=LONG_BUCKETS, registry=r)

    def watch(self, agent):
        """Read ``agent``'s state at each scrape (:class:`NodeCollector`)."""
        self.registry.register(NodeCollector(agent))

    def restarted(self, why, oom_killed):
        """An instance is restarted after an exit (``why``: a liveness failure's reason, or None)."""
        self.restarts.labels(restart_reason(why, oom_killed)).inc()

    def probed(self, ok, seconds):
        """A health check ran."""
        self._probe_results[bool(ok)].inc()   # the children looked up once: 200 checks a second call this
        self.probe_seconds.observe(seconds)

    def fetched(self, ok, size, seconds):
        """An image fetch ended (``size``: bytes of the archives it had to download)."""
        self.fetches.labels("success" if ok else "failure").inc()
        if ok:
            self.fetch_bytes.inc(size)
        self.fetch_seconds.observe(seconds)


def instance_counts(instances):
    """``({(app, state): n}, {app: ready n})`` of ``[(app, state, ready)]``, every state present for
    each app (0 when none), so a series does not vanish when its last instance moves on. Pure."""
    by_state = {}
    ready = collections.Counter()
    for app, _, _ in instances:
        for state in State:
            by_state[(app, state.value)] = 0
        ready[app] += 0
    for app, state, is_ready in instances:
        by_state[(app, state)] += 1
        ready[app] += bool(is_ready)
    return by_state, dict(ready)


class NodeCollector(ScrapeCollector):
    """Reads one agent's instances, cgroups, disks and counters when scraped (``source``: the agent)."""

    def collect(self):
        agent = self.source
        insts = [i for i in list(agent.instances.values()) if not i.gone]
        by_state, ready = instance_counts([(i.assignment["app"], i.state.value, i.ready) for i in insts])
        g = GaugeMetricFamily("corral_agent_instances", "Instances this agent holds, by app and state",
                              labels=["app", "state"])
        for (app, state), n in sorted(by_state.items()):
            g.add_metric([app, state], n)
        yield g
        g = GaugeMetricFamily("corral_agent_instances_ready", "Instances passing their readiness check, by app",
                              labels=["app"])
        for app, n in sorted(ready.items()):
            g.add_metric([app], n)
        yield g
        yield from self._usage(insts)
        yield from self._disks()
        c = CounterMetricFamily("corral_agent_rejected_messages", "Bus messages the agent dropped, by reason",
                                labels=["reason"])
        for reason, n in sorted(agent.rejected().items()):
            c.add_metric([reason], n)
        yield c
        yield GaugeMetricFamily("corral_agent_epoch_seen", "The highest leader epoch this agent obeyed",
                                value=agent.fence.highest)
        streams = len(agent.streams.channels) if agent.streams is not None else 0
        yield GaugeMetricFamily("corral_agent_streams", "Log and exec streams open", value=streams)

    def _usage(self, insts):
        memory = GaugeMetricFamily("corral_agent_instance_memory_bytes",
                                   "Memory the kernel charges to an instance (its cgroup)", labels=["app", "instance"])
        cpu = CounterMetricFamily("corral_agent_instance_cpu_seconds", "CPU time of an instance's processes",
                                  labels=["app", "instance"])
        cgroups = self.source.memory
        for inst in insts:
            if cgroups is None or inst.alive_pid() is None:
                continue
            mem, secs = cgroups.usage(inst.id)
            labels = [inst.assignment["app"], inst.id]
            if mem is not None:
                memory.add_metric(labels, mem)
            if secs is not None:
                cpu.add_metric(labels, secs)
        yield memory
        yield cpu

    def _disks(self):
        pressure = GaugeMetricFamily("corral_agent_disk_pressure",
                                     "1 while a disk the agent uses is under pressure (the DiskPressure condition)",
                                     labels=["folder"])
        free = GaugeMetricFamily("corral_agent_disk_free_bytes", "Bytes free on the disk of a folder the agent uses",
                                 labels=["folder"])
        total = GaugeMetricFamily("corral_agent_disk_total_bytes", "Size of the disk of a folder the agent uses",
                                  labels=["folder"])
        for folder, path in (("data", self.source.data_dir), ("images", self.source.images.images_dir)):
            try:
                has, size = facts.disk_free_bytes(path), facts.disk_total_bytes(path)
            except OSError:
                continue
            free.add_metric([folder], has)
            total.add_metric([folder], size)
            pressure.add_metric([folder], int(disk.under_pressure(has, size)))
        yield pressure
        yield free
        yield total
