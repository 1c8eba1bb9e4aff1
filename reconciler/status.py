"""An app's status and conditions, as `get apps` and `apply --wait` read them. Pure.

Counts: ``desired`` (instances wanted, all processes), ``updated`` (rows at
the current revision), ``ready`` (those reported ready) and ``available``
(those ready for ``minReady``).

Conditions (type, status, reason):

- ``Built``: ``Unknown``/``Building`` while the image is queued or building,
  ``True``/``Succeeded``, or ``False``/``BuildFailed`` with the builder's sentence;
- ``Available``: ``True``/``MinimumInstancesAvailable`` when, for every
  process, at least ``instances - maxUnavailable`` instances (of any
  revision) are available, as Kubernetes' Deployment says; else
  ``False``/``MinimumInstancesUnavailable``;
- ``Progressing``: ``True``/``Complete`` when the current revision runs in
  full, available, and nothing else is left; ``True``/``Rolling`` while
  getting there; ``False``/``ProgressDeadlineExceeded`` when the counts have
  not moved for ``progressDeadline`` (the rollout stops until a new revision
  or an undo); ``False``/``Unschedulable`` when an instance fits on no node;
  ``False``/``BuildFailed`` when there is no image to roll out.

``apply --wait`` waits for ``observedGeneration`` to reach the applied
generation and ``Progressing`` to be ``Complete``, and fails on ``False``.
"""
from reconciler.model import is_current
from reconciler.rollout import limits, progress


def next_revision(status, rev_hash):
    """The revision number for ``rev_hash``: unchanged when the hash is the last
    one, else one more than the last (scaling alone never changes the hash)."""
    if status.get("revisionHash") == rev_hash:
        return status.get("revision", "1")
    return str(int(status.get("revision") or 0) + 1)


def _cond(type_, status, reason, message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def built_condition(build):
    """The ``Built`` condition from the app's build record (or None)."""
    if build is None or build.state in ("queued", "building"):
        return _cond("Built", "Unknown", "Building", "image is being built")
    if build.state == "succeeded":
        return _cond("Built", "True", "Succeeded", f"image {build.image}")
    return _cond("Built", "False", "BuildFailed", build.error or "the build failed")


def app_status(*, generation, app, build, rev_hash, rows, ready_ids, available_ids, unplaced, prev, now,
               draining=frozenset()):
    """The status dict of one app after a loop pass.

    ``app``: its DesiredApp; ``rows``: its desired rows after the plan;
    ``ready_ids``/``available_ids``: ids of instances reported ready, and
    ready for minReady; ``unplaced``: the plan's Unplaced entries for this
    app; ``prev``: the status written before (for the progress clock);
    ``now``: the time of this pass; ``draining``: the names of the nodes being drained (their
    rows are not current: :func:`reconciler.model.is_current`).
    """
    wanted = sum(p.count for p in app.processes)
    current = [r for r in rows if is_current(r, app, draining)]
    ready = sum(1 for r in current if r.id in ready_ids)
    available = sum(1 for r in current if r.id in available_ids)
    complete = app.image is not None and available == wanted and len(rows) == wanted == len(current)
    record, failed = progress((prev or {}).get("progress"), app.revision, len(current), available, complete,
                              now, app.progress_deadline)
    built = built_condition(build)
    short = []
    for p in app.processes:
        have = sum(1 for r in rows if r.process == p.name and r.id in available_ids)
        need = p.count - limits(app, p.count)[1]
        if have < need:
            short.append(f"{p.name} has {have} available, needs {need}")
    if not short:
        available_cond = _cond("Available", "True", "MinimumInstancesAvailable",
                               f"{available} of {wanted} instances available at revision {app.revision}")
    else:
        available_cond = _cond("Available", "False", "MinimumInstancesUnavailable", "; ".join(short))
    if built["status"] == "False":
        progressing = _cond("Progressing", "False", "BuildFailed", built["message"])
    elif failed:
        progressing = _cond("Progressing", "False", "ProgressDeadlineExceeded",
                            f"revision {app.revision} made no progress for {app.progress_deadline:g}s "
                            f"({available} of {wanted} available); undo it or apply a fix")
    elif unplaced:
        u = unplaced[0]
        progressing = _cond("Progressing", "False", "Unschedulable",
                            f"{u.missing} instance(s) of {u.process} pending: {u.reason}")
    elif complete:
        progressing = _cond("Progressing", "True", "Complete", f"revision {app.revision} is available")
    else:
        progressing = _cond("Progressing", "True", "Rolling",
                            f"{available} of {wanted} instances available at revision {app.revision}")
    return {
        "observedGeneration": generation,
        "revision": app.revision,
        "revisionHash": rev_hash,
        "image": app.image,
        "desired": wanted,
        "updated": len(current),
        "ready": ready,
        "available": available,
        "progress": record,
        "conditions": [available_cond, progressing, built],
    }


def rollout_failed(status, revision):
    """Whether ``status`` says the rollout of ``revision`` missed its deadline."""
    rec = (status or {}).get("progress") or {}
    return bool(rec.get("failed")) and rec.get("revision") == revision
