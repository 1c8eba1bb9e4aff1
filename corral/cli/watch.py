"""`corral get apps|instances|nodes|events [NAME] -w`: the API's change stream, printed as it comes.

The reconciler sends every object first, then each change (GET /v1/watch, server-sent events; see
reconciler/watch.py). As a table, each line is a row of `corral get` with the change's type first
(``ADDED``, ``MODIFIED``, ``DELETED``), the columns as wide as the listing made them; with ``-o json``,
each change is one JSON object a line, ``{"kind", "type", "object"}``, the object as `get -o json`
shows it; with ``-o yaml``, one YAML document each.

A watch outlives the reconciler it reads from, as client-go's reflector does: when the stream is
lost (that reconciler stopped, or dropped a watcher too slow for it), the watch says so on stderr,
opens the stream again on any reconciler that answers (waiting 0.5 s, doubling to 5 s, between
tries), and prints only what changed meanwhile: the new listing against what it had shown
(:func:`corral.changes.diff`). An error the API answers with (a bad token) ends it.
"""
import json
import sys
import time

from corral import changes
from corral.cli.client import ClientError
from corral.cli.output import COLUMNS
from corral.cli.stream import Lost, NoAnswer

SHOWN_EVENTS = 1000   # events kept to compare a listing after a reconnection with (the API lists 100)
KINDS = {"apps": "app", "instances": "instance", "nodes": "node", "events": "event"}   # what the stream carries


def events(response):
    """``(event name, data)`` of each server-sent event of ``response`` as it arrives (comments left out).

    Raises Lost (a ClientError) when the connection is lost before the stream's end."""
    import http.client
    from corral.cli.client import _short
    rest = b""
    try:
        while True:
            block = response.read1(64 * 1024)
            if not block:
                return
            rest += block
            *frames, rest = rest.split(b"\n\n")
            for f in frames:
                name, data = "message", []
                for line in f.decode("utf-8").split("\n"):
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                if data:
                    yield name, "\n".join(data)
    except (OSError, http.client.HTTPException) as e:
        raise Lost(f"the connection to the API was lost ({_short(e)})")


def selects(resource, name, obj):
    """Whether ``obj`` (one object of ``resource``) is one `get RESOURCE NAME` names (all when no name):
    an app or node by its name, an instance by its id or its app, an event by its object's name."""
    if not name:
        return True
    if resource == "instances":
        return name in (obj.get("id"), obj.get("app"))
    return obj.get("name") == name


class Rows:
    """Table lines of changes: the listing's columns, each as wide as the listing needed."""

    def __init__(self, resource, wide):
        base, extra = COLUMNS[resource]
        self.columns = [("EVENT", None)] + base + (extra if wide else [])
        self.widths = None

    def cells(self, change):
        return [change["type"]] + [fn(change["object"]) for _, fn in self.columns[1:]]

    def listing(self, changes):
        """The header and a row for each change of the listing; fixes the columns' widths."""
        rows = [[h for h, _ in self.columns]] + [self.cells(c) for c in changes]
        self.widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        self.widths[0] = max(self.widths[0], len("MODIFIED"))   # the widest type, whichever the listing had
        return [self._line(r) for r in rows]

    def row(self, change):
        return self._line(self.cells(change))

    def _line(self, cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths)).rstrip()


class Printer:
    """Changes of one kind, printed in ``fmt`` (table, wide, json, yaml)."""

    def __init__(self, resource, fmt, out):
        self.fmt, self.out = fmt, out
        self.rows = Rows(resource, fmt == "wide")
        self.listed = False   # the table's header and widths come from the first listing

    def listing(self, listed):
        if self.fmt in ("table", "wide") and not self.listed:
            self.out("\n".join(self.rows.listing(listed)), flush=True)
        else:
            for change in listed:
                self.change(change)
        self.listed = True

    def change(self, change):
        if self.fmt == "json":
            self.out(json.dumps(change, sort_keys=True), flush=True)
        elif self.fmt == "yaml":
            import yaml
            self.out("---\n" + yaml.safe_dump(change, sort_keys=True, default_flow_style=False).rstrip(), flush=True)
        else:
            self.out(self.rows.row(change), flush=True)


def follow(response, resource, name, shown, printer):
    """Print one stream's changes of ``resource`` (named ``name``, or all) until it ends; ``shown`` (``{key:
    object}``, updated in place) is what was printed before, so that a listing after a reconnection
    prints only what differs from it. Raises Lost when the stream is lost or dropped."""
    kind, listed = KINDS[resource], {}
    for event, data in events(response):
        if event == "dropped":
            raise Lost(json.loads(data).get("error") or "the API ended the watch")
        if event == "synced":
            printer.listing(changes.diff(kind, shown, listed))
            shown.clear()
            shown.update(listed)
            listed = None
            continue
        change = json.loads(data)
        obj = change.get("object")
        if change.get("kind") != kind or not isinstance(obj, dict) or not selects(resource, name, obj):
            continue
        key = changes.key(kind, obj)
        if listed is not None:
            listed[key] = obj
            continue
        if change.get("type") == "DELETED":
            shown.pop(key, None)
        else:
            shown[key] = obj
        while kind in changes.APPEND_ONLY and len(shown) > SHOWN_EVENTS:   # a days-long watch of events
            del shown[next(iter(shown))]
        printer.change(change)
    raise Lost("the API ended the watch")


def watch(client, resource, name, fmt, out=print, err=sys.stderr, sleep=time.sleep, retry_max=5.0):
    """Print ``resource``'s objects, then its changes, until Ctrl-C or an error the API answers with
    (see the module's docstring: a lost stream is opened again)."""
    from corral.cli.stream import open_stream
    printer, shown, delay, lost = Printer(resource, fmt, out), {}, 0.5, None
    while True:
        try:
            url, response = open_stream(client, "GET", "/v1/watch", params={"kinds": resource},
                                        headers={"Accept": "text/event-stream"})
        except NoAnswer as e:
            if lost is None:
                raise   # never connected: nothing to keep watching
            print(f"watch: {e}; trying again in {delay:g}s", file=err, flush=True)
            sleep(delay)
            delay = min(delay * 2, retry_max)
            continue
        if lost is not None:
            print(f"watch: reading {url} again", file=err, flush=True)
        delay = 0.5
        try:
            follow(response, resource, name, shown, printer)
        except Lost as e:
            lost = e
            print(f"watch: {e}; reconnecting", file=err, flush=True)
        finally:
            response.close()
