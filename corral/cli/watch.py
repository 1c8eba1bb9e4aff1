"""`corral get apps|instances|nodes|events [NAME] -w`: the API's change stream, printed as it comes.

The reconciler sends every object first, then each change (GET /v1/watch, server-sent events; see
reconciler/watch.py). As a table, each line is a row of `corral get` with the change's type first
(``ADDED``, ``MODIFIED``, ``DELETED``), the columns as wide as the listing made them; with ``-o json``,
each change is one JSON object a line, ``{"kind", "type", "object"}``, the object as `get -o json`
shows it; with ``-o yaml``, one YAML document each.
"""
import json

from corral.cli.client import ClientError
from corral.cli.output import COLUMNS

KINDS = {"apps": "app", "instances": "instance", "nodes": "node", "events": "event"}   # what the stream carries


def events(response):
    """``(event name, data)`` of each server-sent event of ``response`` as it arrives (comments left out).

    Raises ClientError when the connection is lost before the stream's end."""
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
        raise ClientError(f"the connection to the API was lost ({_short(e)})")


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


def watch(client, resource, name, fmt, out=print):
    """Print ``resource``'s objects, then its changes, until the stream ends (an error) or Ctrl-C."""
    from corral.cli.stream import open_stream
    _, response = open_stream(client, "GET", "/v1/watch", params={"kinds": resource},
                              headers={"Accept": "text/event-stream"})
    rows = Rows(resource, fmt == "wide")
    listing = []
    try:
        for event, data in events(response):
            if event == "dropped":
                raise ClientError(json.loads(data).get("error") or "the API ended the watch")
            if event == "synced":
                if fmt in ("table", "wide"):
                    out("\n".join(rows.listing(listing)), flush=True)
                listing = None
                continue
            change = json.loads(data)
            if change.get("kind") != KINDS[resource] or not selects(resource, name, change["object"]):
                continue
            if fmt == "json":
                out(json.dumps(change, sort_keys=True), flush=True)
            elif fmt == "yaml":
                import yaml
                out("---\n" + yaml.safe_dump(change, sort_keys=True, default_flow_style=False).rstrip(), flush=True)
            elif listing is not None:
                listing.append(change)
            else:
                out(rows.row(change), flush=True)
    finally:
        response.close()
    raise ClientError("the API ended the watch")
