"""What a node's report says that matters, and the digest both ends name it by (pure).

An agent sends each reconciler a full ``report`` (node facts and every
instance) when it changes, and otherwise a small ``alive`` that names the
report it stands for by :func:`digest`. A reconciler holding a report of that
digest from the same agent process takes the ``alive`` as a heartbeat; one that
does not answers with an ``ack`` naming what it holds, and gets the full report
next (see :mod:`nodeagent.reporting`). So both ends must hash the same thing:
the stable facts and the instances, never the fields that move on every
heartbeat of an idle node (load, free disk, counters).
"""
import hashlib

from corral.canonical import canonical_bytes

# Node facts that move on every heartbeat of an idle node (load, free disk, the count
# of rejected messages): kept in the report for the views, never a change that
# wakes the controller, and not in the digest. seq and started_at are outside
# ``node`` and never compared.
VOLATILE_NODE_FIELDS = frozenset({"load", "rejected_messages"})
VOLATILE_CAPACITY_FIELDS = frozenset({"disk"})


def stable_facts(node):
    """A report's ``node`` object without its volatile fields: what decides whether
    the node changed (state, labels, address, cpu and memory, conditions)."""
    out = {k: v for k, v in node.items() if k not in VOLATILE_NODE_FIELDS}
    if isinstance(out.get("capacity"), dict):
        out["capacity"] = {k: v for k, v in out["capacity"].items() if k not in VOLATILE_CAPACITY_FIELDS}
    return out


def sorted_instances(instances):
    """A report's instances in one order (by id), as both ends compare them."""
    return tuple(sorted(instances, key=lambda i: i["id"]))


def digest(body):
    """The hex sha256 of a report's stable facts and instances: equal digests, same report
    as far as any decision goes."""
    return hashlib.sha256(canonical_bytes({"node": stable_facts(body["node"]),
                                           "instances": sorted_instances(body["instances"])})).hexdigest()
