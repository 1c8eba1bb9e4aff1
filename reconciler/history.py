"""Rollout history and undo: which revision to go back to, and the apply that does it. Pure.

The leader records each revision of an app when it first rolls it out (the
store keeps the last 10). Undo, as Kubernetes' ``rollout undo``, re-applies
the spec and source of an earlier revision; that apply makes a new
generation and, its image and process specs being the old ones, a new
revision number with the old revision's hash. Instance counts are not taken
from the old revision: scaling is not part of a revision, so undo keeps the
counts the app has now.
"""


class UndoError(ValueError):
    """There is no revision to go back to; the message says why."""


def revision_json(rev, current):
    """One revision as `corral rollout history -o json` shows it."""
    return {"revision": rev.revision, "hash": rev.hash, "image": rev.image, "generation": rev.generation,
            "source": rev.source_digest, "created_at": rev.created_at, "current": str(rev.revision) == current,
            "processes": {name: p.get("command") for name, p in sorted(rev.spec.get("processes", {}).items())}}


def pick_target(revisions, current, to_revision=None):
    """The revision record undo goes back to: ``to_revision``, or the newest one
    that is not ``current`` (the revision number running now, a string)."""
    if to_revision is not None:
        for rev in revisions:
            if rev.revision == to_revision:
                if str(rev.revision) == current:
                    raise UndoError(f"revision {to_revision} is the current revision already")
                return rev
        kept = ", ".join(str(r.revision) for r in revisions) or "none"
        raise UndoError(f"revision {to_revision} is not in the history (kept: {kept})")
    for rev in sorted(revisions, key=lambda r: -r.revision):
        if str(rev.revision) != current:
            return rev
    raise UndoError("there is no earlier revision to go back to")


def undo_document(record, target):
    """The apply document that brings ``record`` (an AppRecord) back to ``target``,
    keeping today's labels, owner and instance counts."""
    spec = {k: v for k, v in target.spec.items()}
    processes = {}
    for name, proc in target.spec.get("processes", {}).items():
        proc = dict(proc)
        now = record.spec.get("processes", {}).get(name)
        if now is not None and "instances" in now:
            proc["instances"] = now["instances"]
        processes[name] = proc
    spec["processes"] = processes
    doc = {"name": record.name, "labels": record.labels, "spec": spec, "source_digest": target.source_digest}
    if record.owner:
        doc["owner"] = record.owner
    return doc
