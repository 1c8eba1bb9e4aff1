"""Events from what agents report of their instances: a restart and its reason, a failure.

The agent restarts an instance by itself (exit under its restart policy, a
failed liveness check, the kernel's OOM killer) and says why in the
instance's ``message``. The reconciler turns the moment an instance enters
``backoff`` or ``failed`` into one event of its app, so that ``corral
describe app`` shows the history an operator asks for ("why did it
restart at 3 am?"). Pure: no I/O; the daemon writes what this returns.
"""

RESTARTING = "backoff"
FAILED = "failed"


def reason_of(state, message):
    """The event reason for an instance that entered ``state`` saying ``message``."""
    text = message or ""
    if text.startswith("OOMKilled"):
        return "OOMKilled"
    if "health check failed" in text:
        return "Unhealthy"
    return "BackOff" if state == RESTARTING else "InstanceFailed"


def instance_events(node, before, after):
    """``[(app, reason, message)]`` for each instance of ``after`` (one node's report) that is in
    ``backoff`` or ``failed`` now and was not in that state in ``before`` (the node's previous
    report), or has restarted since (its ``restarts`` count grew). An instance new to the node
    counts only when it arrives failed. Both are lists of report instance dicts."""
    was = {i["id"]: i for i in before}
    out = []
    for inst in after:
        state = inst["state"]
        if state not in (RESTARTING, FAILED):
            continue
        prev = was.get(inst["id"])
        if prev is not None and prev["state"] == state and prev.get("restarts", 0) == inst.get("restarts", 0):
            continue
        if prev is None and state == RESTARTING:
            continue   # first seen already restarting: the event was the previous reconciler's to write
        message = inst.get("message") or state
        out.append((inst["app"], reason_of(state, message),
                    f"instance {inst['id']} on node {node}: {message}"))
    return out
