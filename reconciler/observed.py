"""Observed state: what agents last reported to this reconciler, in memory.

Every agent reports to every reconciler, so each keeps its own view and any of
them can answer `get nodes` and `get instances`. The view is written only by
the bus handler (:meth:`Observed.record`) and read as immutable snapshots.

A reconciler that has just started has heard from nobody yet; a node the
store knows counts as last seen no earlier than this process's start, so a
fresh leader never mistakes the silence of its own start for lost nodes.
"""
import dataclasses

from corral.nodereport import digest, sorted_instances, stable_facts
from reconciler.model import CORDONED, LOST, READY, UNREACHABLE, NodeView, ObservedInstance, frozen_items


def node_state(last_seen, now, timings, cordoned):
    """``ready``, ``cordoned``, ``unreachable`` (silent past the heartbeat
    timeout) or ``lost`` (silent past the node grace period)."""
    age = now - last_seen
    if age > timings.node_grace:
        return LOST
    if age > timings.heartbeat_timeout:
        return UNREACHABLE
    return CORDONED if cordoned else READY


@dataclasses.dataclass(frozen=True)
class NodeReport:
    """One node's latest report and when it arrived (this reconciler's clock)."""

    name: str
    received_at: float
    node: dict
    instances: tuple
    epoch_seen: int
    started_at: float = None   # the reporting agent process's start (report.started_at)
    seq: int = 0               # its report number (report.seq, or a later alive's)
    digest: str = None         # corral.nodereport.digest, for agents that send ``alive`` (report.alive)


def is_delayed(prev, body):
    """True when ``body`` is older than ``prev`` (the node's last kept report): sent by an
    agent process that started earlier, or by the same one with a lower or equal ``seq``.
    A later ``started_at`` is a restarted agent, whose ``seq`` starts over."""
    if prev is None or prev.started_at is None or body.get("started_at") is None:
        return False
    if body["started_at"] != prev.started_at:
        return body["started_at"] < prev.started_at
    return body.get("seq", 0) <= prev.seq


class Observed:
    """The latest report of every node that has reported to this reconciler."""

    def __init__(self, started_at):
        self.started_at = started_at
        self._reports = {}
        self._ready_since = {}  # instance id -> when a report first said it is ready (minReady)
        self.version = 0  # grows when an instance set or state changes

    def record(self, body, now):
        """Keep ``body`` (a verified ``report``) as its node's latest, volatile fields
        included; returns True when its instances or its stable node facts
        (:func:`stable_facts`) differ from the previous report's."""
        name = body["node"]["name"]
        prev = self._reports.get(name)
        if is_delayed(prev, body):
            return False
        instances = sorted_instances(dict(i) for i in body["instances"])
        self._reports[name] = NodeReport(name, now, body["node"], instances, body.get("epoch_seen", 0),
                                         body.get("started_at"), body.get("seq", 0),
                                         digest(body) if body.get("alive") else None)
        if prev is not None:
            reported = {i["id"] for i in instances}
            for i in prev.instances:
                if i["id"] not in reported:
                    self._ready_since.pop(i["id"], None)
        for i in instances:
            if i["ready"] and i["state"] == "running":
                self._ready_since.setdefault(i["id"], now)
            else:
                self._ready_since.pop(i["id"], None)
        changed = (prev is None or prev.instances != instances
                   or stable_facts(prev.node) != stable_facts(body["node"]))
        if changed:
            self.version += 1
        return changed

    def refresh(self, name, body, now):
        """Take ``body`` (a verified ``alive`` from node ``name``) as a heartbeat of the report kept
        for it. True when the kept report is the one it names (the same agent process, the same
        :func:`corral.nodereport.digest`): it is then as fresh as a report received ``now`` (a
        delayed ``alive`` changes nothing). False when this reconciler keeps another report or
        none, and must ask for the full one."""
        prev = self._reports.get(name)
        if prev is None or prev.digest is None or prev.started_at != body["started_at"] \
                or prev.digest != body["digest"]:
            return False
        if body["seq"] > prev.seq:
            self._reports[name] = dataclasses.replace(prev, received_at=now, seq=body["seq"],
                                                      epoch_seen=body["epoch_seen"])
        return True

    def reports(self):
        """Every node's latest report, by name."""
        return dict(self._reports)

    def latest(self, name):
        """Node ``name``'s latest report, or None (no copy of the table: called per message)."""
        return self._reports.get(name)

    def last_seen(self, name):
        """When ``name`` last reported, floored at this reconciler's start."""
        r = self._reports.get(name)
        return max(r.received_at if r else 0.0, self.started_at)

    def node_views(self, stored, desired, now, timings):
        """NodeViews of every node that reported, that the store knows (``stored``: NodeRecords,
        which say which are cordoned or draining) or that holds ``desired`` rows: the one view of
        the nodes, for the planner and for the API."""
        known = {n.name for n in stored} | {r.node for r in desired}
        cordoned = {n.name for n in stored if n.cordoned}
        draining = {n.name for n in stored if n.draining}
        views = []
        for name in sorted(set(self._reports) | set(known)):
            r = self._reports.get(name)
            cap = (r.node.get("capacity") if r else None) or {}
            views.append(NodeView(
                name=name, state=node_state(self.last_seen(name), now, timings, name in cordoned),
                labels=frozen_items(r.node.get("labels") if r else {}),
                cpu=float(cap.get("cpu", 0)), memory=int(cap.get("memory", 0)),
                draining=name in draining))
        return views

    def instances(self):
        """ObservedInstances from every report."""
        out = []
        for r in self._reports.values():
            for i in r.instances:
                out.append(ObservedInstance(id=i["id"], node=r.name, app=i["app"],
                                            state=i["state"], ready=bool(i["ready"]),
                                            ready_since=self._ready_since.get(i["id"])))
        return out

    def instance_reports(self):
        """``{id: (node, instance dict)}`` of every reported instance."""
        return {i["id"]: (r.name, i) for r in self._reports.values() for i in r.instances}
