"""The JSON shapes of `get apps|instances|nodes|builds|events` (CLI.md). Pure.

Instances merge the two halves of the truth: the desired table says what
should run where, the agents' reports say what does. A desired instance no
agent reports yet is ``pending``; one on an unreachable node is ``unknown``;
an instance an agent still reports but the table no longer holds (being
stopped, or a stale copy on a node that came back) is listed too, so that
nothing running is ever hidden.
"""
import datetime

from corral.secrets import redact_spec
from reconciler.model import LOST, UNREACHABLE


def iso(ts):
    """Seconds since the epoch as ``2026-11-26T15:20:38Z`` (None stays None)."""
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def app_json(rec, show_secrets=False):
    """One app as `get apps -o json` shows it: its env values redacted unless ``show_secrets``."""
    st = rec.status or {}
    return {
        "name": rec.name,
        "labels": rec.labels,
        "generation": rec.generation,
        "observedGeneration": st.get("observedGeneration", 0),
        "resourceVersion": rec.resource_version,
        "revision": st.get("revision"),
        "image": st.get("image"),
        "desired": sum(int(p.get("instances", 1)) for p in rec.spec.get("processes", {}).values()),
        "ready": st.get("ready", 0),
        "updated": st.get("updated", 0),
        "available": st.get("available", 0),
        "conditions": st.get("conditions", []),
        "deleting": rec.deleting,
        "source": rec.source_digest,
        "owner": rec.owner,
        "spec": rec.spec if show_secrets else redact_spec(rec.spec),
        "created_at": iso(rec.created_at),
        "updated_at": iso(rec.updated_at),
    }


def instances_json(desired, reports, node_states):
    """Every instance, desired or still reported, as `get instances -o json` shows it.

    ``reports``: ``{id: (node, reported dict)}``; ``node_states``: node -> state.
    """
    out = []
    for row in desired:
        node, rep = reports.get(row.id, (row.node, None))
        state = rep["state"] if rep else "pending"
        if node_states.get(row.node) in (UNREACHABLE, LOST):
            state = "unknown"
        out.append(_instance(row.id, row.app, row.process, row.node, state, rep,
                             revision=row.revision, image=row.image, desired=True))
    wanted = {r.id for r in desired}
    for iid, (node, rep) in sorted(reports.items()):
        if iid in wanted:
            continue
        state = rep["state"]
        if node_states.get(node) in (UNREACHABLE, LOST) and state not in ("stopped", "failed"):
            state = "unknown"
        out.append(_instance(iid, rep["app"], rep["process"], node, state, rep,
                             revision=rep.get("revision"), image=rep.get("image"), desired=False))
    return sorted(out, key=lambda i: (i["app"], i["process"], i["id"]))


def _instance(iid, app, process, node, state, rep, *, revision, image, desired):
    rep = rep or {}
    return {
        "id": iid, "app": app, "process": process, "node": node, "state": state,
        # Only a desired instance is ever ready: one the table no longer holds (a stale
        # copy on a node that came back, or one being replaced) is on its way out and
        # must leave every ready list at once, even before its agent has heard.
        "ready": bool(rep.get("ready")) and state == "running" and desired,
        "address": rep.get("address"), "port": rep.get("port"), "pid": rep.get("pid"),
        "revision": revision, "image": image, "restarts": rep.get("restarts", 0),
        "started_at": iso(rep.get("started_at")), "exit_code": rep.get("exit_code"),
        "backoff_until": iso(rep.get("backoff_until")),
        "message": rep.get("message"), "desired": desired,
    }


def nodes_json(views, stored, reports, desired, last_seen, credential=lambda name: "cluster key"):
    """Every node as `get nodes -o json` shows it.

    ``views``: NodeViews (state); ``stored``: NodeRecords; ``reports``: node ->
    NodeReport; ``last_seen(name)``: when this reconciler last heard from it;
    ``credential(name)``: what it speaks with (``own key``, ``cluster key``) or ``revoked``.
    """
    by_name = {n.name: n for n in stored}
    rows_by_node = {}  # grouped once: a scan of 10,000 rows for each of 1,000 nodes held the hub for a second
    for r in desired:
        rows_by_node.setdefault(r.node, []).append(r)
    out = []
    for v in views:
        rep = reports.get(v.name)
        rec = by_name.get(v.name)
        node = rep.node if rep else {}
        rows = rows_by_node.get(v.name, [])
        out.append({
            "name": v.name,
            "state": v.state,
            "draining": v.draining,
            "credential": credential(v.name),
            "address": node.get("address") or (rec.address if rec else None),
            "labels": node.get("labels") or (rec.labels if rec else {}),
            "capacity": node.get("capacity") or (rec.capacity if rec else {}),
            "allocated": {
                "cpu": sum(float((r.spec.get("resources") or {}).get("cpu") or 0) for r in rows),
                "memory": sum(int((r.spec.get("resources") or {}).get("memory") or 0) for r in rows),
            },
            "instances": len(rows),
            "conditions": node.get("conditions", []),
            "isolation": node.get("isolation"),   # the condition Isolation; None until the node reports it
            "load": node.get("load"),
            "version": node.get("version"),
            "agent_started": iso(rep.started_at) if rep else None,   # a restarted agent shows a later one
            "rejected_messages": node.get("rejected_messages", {}),
            "last_seen": iso(last_seen(v.name) if rep else (rec.last_seen if rec else None)),
        })
    return out


def build_json(b):
    """One build as `get builds -o json` shows it."""
    duration = None
    if b.started_at is not None and b.finished_at is not None:
        duration = round(b.finished_at - b.started_at, 3)
    return {
        "id": b.id, "key": b.key, "app": b.app, "image": b.image, "state": b.state,
        "cache": b.cache, "duration": duration, "phases": b.phases or {},
        "started_at": iso(b.started_at), "finished_at": iso(b.finished_at),
        "error": b.error, "worker": b.worker,
        "progress": b.progress, "layers": b.layers, "lock": b.lock, "log_tail": b.log_tail,
    }


def event_json(e):
    """One event as `get events -o json` shows it."""
    return {"time": iso(e.time), "kind": e.kind, "name": e.name, "reason": e.reason,
            "message": e.message, "actor": e.actor}
