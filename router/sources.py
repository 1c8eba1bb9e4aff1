"""Which reconciler's route table a router serves. Pure: ``now`` is passed in.

Every reconciler publishes the table it derives (``routes`` messages: a
``snapshot``, then ``delta`` after ``delta``, and a ``tick`` every second that
carries its current ``seq`` so that a lost last delta is noticed too). A
router keeps one :class:`Source` per reconciler and serves the table of a
*live* one (heard within the timeout, and in step): the leader's when it is
live (by the highest epoch), else the freshest. When none is live it keeps serving the table it
served last, and its health says so.
"""
import dataclasses

from corral.routetable import RESYNC, Table, apply_delta, from_snapshot


@dataclasses.dataclass(frozen=True)
class Source:
    """What one publisher last told this router. ``table`` is None until its first snapshot
    (and again after a gap, until the next one)."""

    table: Table = None
    heard_at: float = float("-inf")
    leader: bool = False
    epoch: int = 0   # the publisher's leader epoch when it leads


def receive(source, body, now):
    """``(source, resync)`` after the routes message ``body``: the new state of the publisher,
    and whether the router must ask it for a snapshot (a gap, a new stream, a tick ahead of
    the table, or a delta before any snapshot)."""
    heard = dataclasses.replace(source, heard_at=now, leader=bool(body.get("leader")), epoch=body.get("epoch", 0))
    kind = body["kind"]
    if kind == "snapshot":
        table = source.table
        if table is not None and table.stream == body["stream"] and table.seq > body["seq"]:
            return heard, False   # an older snapshot (sent to another router's subscribe) arrived late
        return dataclasses.replace(heard, table=from_snapshot(body)), False
    if source.table is None:
        return heard, True
    if kind == "tick":
        in_step = body["stream"] == source.table.stream and body["seq"] <= source.table.seq
        return (heard, False) if in_step else (dataclasses.replace(heard, table=None), True)
    table = apply_delta(source.table, body)
    if table == RESYNC:
        return dataclasses.replace(heard, table=None), True
    return dataclasses.replace(heard, table=table), False


def is_live(source, now, timeout):
    """True when ``source`` has a table and was heard from within ``timeout`` seconds."""
    return source.table is not None and now - source.heard_at <= timeout


def choose(sources, now, timeout):
    """The name of the publisher whose table to serve, or None when no one is live: the live
    leader (the higher epoch when two say they lead: the other has lost its lease and not
    noticed yet), else the live one heard from last."""
    live = {name: s for name, s in sources.items() if is_live(s, now, timeout)}
    if not live:
        return None
    return max(live, key=lambda name: (live[name].leader, live[name].epoch, live[name].heard_at, name))
