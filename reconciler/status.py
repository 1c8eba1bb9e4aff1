"""An app's status and conditions, as `get apps` and `apply --wait` read them. Pure.

Conditions (type, status, reason):

- ``Built``: ``Unknown``/``Building`` while the image is queued or building,
  ``True``/``Succeeded``, or ``False``/``BuildFailed`` with the builder's sentence;
- ``Available``: ``True`` when every wanted instance of the current revision
  is ready, else ``False``/``InstancesNotReady`` ("1 of 2 instances ready");
- ``Progressing``: ``True``/``Complete`` when the current revision runs in
  full and nothing else is left, ``True``/``Rolling`` while getting there,
  ``False``/``Unschedulable`` when an instance fits on no node, and
  ``False``/``BuildFailed`` when there is no image to roll out.

``apply --wait`` waits for ``observedGeneration`` to reach the applied
generation and ``Progressing`` to be ``Complete``, and fails on ``False``.
"""


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


def app_status(*, generation, app, build, rev_hash, rows, ready_ids, unplaced):
    """The status dict of one app after a loop pass.

    ``app``: its DesiredApp; ``rows``: its desired rows after the plan;
    ``ready_ids``: ids of instances reported running and ready; ``unplaced``:
    the plan's Unplaced entries for this app.
    """
    wanted = sum(p.count for p in app.processes)
    current = [r for r in rows
               if app.image is not None and r.image == app.image
               and app.process(r.process) is not None and r.spec == app.process(r.process).agent_spec]
    ready = sum(1 for r in current if r.id in ready_ids)
    built = built_condition(build)
    if ready >= wanted:
        available = _cond("Available", "True", "MinimumInstancesReady", f"{ready} of {wanted} instances ready")
    else:
        available = _cond("Available", "False", "InstancesNotReady", f"{ready} of {wanted} instances ready")
    if built["status"] == "False":
        progressing = _cond("Progressing", "False", "BuildFailed", built["message"])
    elif unplaced:
        u = unplaced[0]
        progressing = _cond("Progressing", "False", "Unschedulable",
                            f"{u.missing} instance(s) of {u.process} pending: {u.reason}")
    elif app.image is not None and ready == wanted and len(rows) == wanted:
        progressing = _cond("Progressing", "True", "Complete", f"revision {app.revision} is available")
    else:
        progressing = _cond("Progressing", "True", "Rolling", f"{ready} of {wanted} instances ready at revision {app.revision}")
    return {
        "observedGeneration": generation,
        "revision": app.revision,
        "revisionHash": rev_hash,
        "image": app.image,
        "desired": wanted,
        "ready": ready,
        "conditions": [available, progressing, built],
    }
