"""Changes between successive views of the cluster, as `get -w` and the dashboard see them. Pure.

A *view* of one kind is ``{key: object}``: the objects as ``get -o json``
shows them (apps by name, instances by id, nodes by name, events by their
row id). The change feed (reconciler/watch.py) reads a view now and then and
sends what :func:`diff` finds between the last one and this one, each change
as kubectl's watch does::

    {"kind": "app", "type": "ADDED" | "MODIFIED" | "DELETED", "object": {...}}

Some fields move on their own while nothing happens (a node's ``last_seen``
and ``load`` on every heartbeat): they are left out of the comparison
(:data:`VOLATILE`), so a quiet cluster sends nothing, and a change that is
sent carries them as they are now. Events only ever come: one that leaves
the window of recent events was not deleted, and is not reported.
"""

KINDS = ("app", "instance", "node", "event")
KEYS = {"app": "name", "instance": "id", "node": "name"}   # the field that names an object of a kind
RESOURCES = {"apps": "app", "instances": "instance", "nodes": "node", "events": "event"}   # `get` names
VOLATILE = {"node": ("last_seen", "load")}
APPEND_ONLY = ("event",)


def _same(kind, a, b):
    """Whether ``a`` and ``b`` differ only in the fields of ``kind`` that move on their own."""
    skip = VOLATILE.get(kind, ())
    if not skip:
        return a == b
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def diff(kind, old, new):
    """The changes that turn view ``old`` into view ``new`` (both ``{key: object}``) of ``kind``:
    ADDED for a key only in ``new``, MODIFIED for an object that differs in more than its volatile
    fields, DELETED (with the last object seen) for a key only in ``old``; none of the latter two for
    an append-only kind. In key order (events: their row ids, so oldest first)."""
    out = []
    for key in sorted(set(old) | set(new), key=_order):
        if key not in old:
            out.append(change(kind, "ADDED", new[key]))
        elif kind in APPEND_ONLY:
            continue
        elif key not in new:
            out.append(change(kind, "DELETED", old[key]))
        elif not _same(kind, old[key], new[key]):
            out.append(change(kind, "MODIFIED", new[key]))
    return out


def _order(key):
    """Sort ints (event ids) by number and anything else by text, without comparing the two."""
    return (0, key, "") if isinstance(key, int) else (1, 0, str(key))


def listing(kind, view):
    """The changes that show a watcher who knows nothing yet view ``view``: every object ADDED."""
    return diff(kind, {}, view)


def key(kind, obj):
    """What names ``obj`` of ``kind`` in a view as a client rebuilds it from the objects alone: its
    name or id, and for an event (which has no id in its JSON) all of it."""
    field = KEYS.get(kind)
    return obj.get(field) if field else tuple(sorted((k, str(v)) for k, v in obj.items()))


def change(kind, type_, obj):
    """One change as the stream sends it."""
    return {"kind": kind, "type": type_, "object": obj}


def parse_kinds(text):
    """The kinds a ``?kinds=`` query names (``apps,nodes``; the singular too), all when empty;
    ValueError with a sentence naming the first unknown one."""
    if not text:
        return KINDS
    out = []
    for word in (w.strip() for w in text.split(",")):
        kind = RESOURCES.get(word, word)
        if kind not in KINDS:
            raise ValueError(f"kinds: {word!r} is not one of {', '.join(RESOURCES)}")
        if kind not in out:
            out.append(kind)
    return tuple(out)
