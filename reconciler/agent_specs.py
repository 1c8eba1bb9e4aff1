"""From a stored app to what the planner, the builder and the agents need. Pure.

- :func:`build_inputs`: what an image is built from, and the key of that build;
- :func:`agent_spec`: the part of a process's spec an agent runs with;
- :func:`revision_hash`: what makes a new revision (image or any process's
  agent spec; never the instance count);
- :func:`desired_app`: the planner's frozen view of an app.
"""
import hashlib

from corral.canonical import canonical_bytes, canonical_json
from corral.spec import parse_cpu, parse_duration, parse_memory, process_command
from reconciler.model import DesiredApp, DesiredProcess, frozen_items


def _sha(value):
    return hashlib.sha256(canonical_bytes(value, ascii_only=True)).hexdigest()


def build_inputs(record):
    """``(key, inputs)`` of the build an app needs: same inputs, same key, one build."""
    spec = record.spec
    inputs = {
        "source_digest": record.source_digest,
        "requirements": spec.get("requirements"),
        "python": spec.get("python"),
    }
    return "build-" + _sha(inputs)[:32], inputs


def _resources(proc):
    res = proc.get("resources") or {}
    out = {}
    if res.get("cpu") is not None:
        out["cpu"] = parse_cpu(res["cpu"])
    if res.get("memory") is not None:
        out["memory"] = parse_memory(res["memory"])
    return out


def _health(proc):
    health = proc.get("health")
    if not health:
        return None
    out = {k: health[k] for k in ("http", "tcp", "exec") if k in health}
    for k in ("interval", "timeout", "initialDelay"):
        if k in health:
            out[k] = parse_duration(health[k])
    if "failures" in health:
        out["failures"] = health["failures"]
    return out


def agent_spec(spec, process_name):
    """What the agent needs to run one instance of ``process_name`` (schema: wire/assign)."""
    proc = spec["processes"][process_name]
    out = {
        "command": process_command(proc),
        "env": dict(spec.get("env") or {}),
        "port": bool(proc.get("port", False)),
        "restart": proc.get("restart", "always"),
        "drainPeriod": parse_duration(proc.get("drainPeriod", "2s")),
        "stopGracePeriod": parse_duration(proc.get("stopGracePeriod", "30s")),
        "resources": _resources(proc),
        "health": _health(proc),
    }
    if "retries" in proc:
        out["retries"] = proc["retries"]
    return out


_AGENT_SPECS = {}  # canonical spec text -> {process: agent spec}
_AGENT_SPECS_MAX = 4096


def agent_specs(spec):
    """Every process's :func:`agent_spec`, by name, remembered by the spec's canonical
    text: a loop pass over 1,000 apps parsed every command and duration again (about a
    fifth of its time). The dicts returned are shared: read them, never change them."""
    key = canonical_json(spec, ascii_only=True)
    got = _AGENT_SPECS.get(key)
    if got is None:
        if len(_AGENT_SPECS) >= _AGENT_SPECS_MAX:
            _AGENT_SPECS.clear()
        got = _AGENT_SPECS[key] = {n: agent_spec(spec, n) for n in sorted(spec["processes"])}
    return got


def revision_hash(spec, image):
    """The identity of a revision: the image and every process's agent spec."""
    return _sha({"image": image, "processes": agent_specs(spec)})[:16]


def desired_app(record, image, revision, rollout_failed=False):
    """The planner's view of ``record`` with its built ``image`` (or None);
    ``rollout_failed``: the rollout of ``revision`` missed its deadline."""
    spec = record.spec
    processes = []
    for name, a in agent_specs(spec).items():
        processes.append(DesiredProcess(
            name=name, count=int(spec["processes"][name].get("instances", 1)), agent_spec=a,
            cpu=a["resources"].get("cpu", 0.0), memory=a["resources"].get("memory", 0)))
    placement = spec.get("placement") or {}
    update = spec.get("update") or {}
    return DesiredApp(
        name=record.name, deleting=record.deleting, revision=revision, image=image,
        processes=tuple(processes), node_selector=frozen_items(placement.get("nodeSelector")),
        spread=placement.get("spread", True),
        max_surge=update.get("maxSurge", "25%"), max_unavailable=update.get("maxUnavailable", "25%"),
        min_ready=parse_duration(update.get("minReady", "0s")),
        progress_deadline=parse_duration(update.get("progressDeadline", "600s")),
        rollout_failed=rollout_failed)
