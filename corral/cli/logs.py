"""``corral logs APP``: instance output from every node, merged in time order; ``-f`` follows.

One stream per instance (``GET /v1/instances/ID/logs``), each read by its own
thread into one queue. The backlogs of several instances are merged by time
stamp before they are printed; one instance's backlog, and followed lines,
are printed as they come, a block of lines at a time with no parsing per line
(:func:`nodeagent.logs.app_text`). While
following an app, its instance list is polled so that instances that start
later (a rollout, a replacement) are followed too, and an instance that ends
is said on stderr. The app's output goes to stdout, whichever stream (stdout
or stderr) it came from; corral's own lines (``sys``: starts and exits) go
to stderr.

Only ``add_parser`` runs for every ``corral`` command: the stream reader, the
log line parser and the duration reader are imported when ``logs`` runs.
"""
import sys
import time

from corral.cli.client import ClientError
from corral.cli.verbs import add_verb

POLL_INSTANCES = 2.0   # seconds between looks for new instances while following an app


def add_parser(sub):
    """Register ``corral logs``."""
    p = add_verb(sub, "logs", "print an app's instance output (stdout and stderr), merged in time order",
                 ["corral logs hello -f", "corral logs hello --process web --since 10m --timestamps"],
                 description="Print an app's instance output (stdout and stderr), from every node, merged in time "
                             "order and prefixed with the instance id when there are several; with -f, keep "
                             "following, new instances too, and say on stderr when one ends.")
    p.add_argument("app", help="the app's name")
    p.add_argument("--process", "-p", help="only instances of this process")
    p.add_argument("--instance", "-i", help="only this instance")
    p.add_argument("--run", "-r", metavar="ID", help="only this run (`corral get runs`), also once it has ended")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines of each instance")
    p.add_argument("--since", default=None, metavar="DURATION", help="only lines newer than this (10m, 1h)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until interrupted")
    p.add_argument("--timestamps", action="store_true", help="show each line's time (UTC)")
    p.add_argument("--previous", action="store_true",
                   help="the output of each instance's run before its latest restart")


def the_run(client, args):
    """The run ``args.run`` of ``args.app`` as the one instance to read; ClientError when it is
    another app's or has not started."""
    run = client.get(f"/v1/runs/{args.run}")
    if run["app"] != args.app:
        raise ClientError(f"run {args.run!r} is of app {run['app']!r}, not {args.app!r}")
    if not run["node"]:
        raise ClientError(f"run {args.run!r} never started ({run['state']}): it has no log")
    args.instance = run["id"]
    return [{"id": run["id"], "app": run["app"], "process": run["process"], "node": run["node"]}]


def matching(client, args):
    """The app's instances that the arguments select; ClientError when the app or instance is unknown."""
    if getattr(args, "run", None):
        return the_run(client, args)
    found = [i for i in client.get("/v1/instances", params={"app": args.app})
             if (args.process is None or i["process"] == args.process)
             and (args.instance is None or i["id"] == args.instance)]
    if not found:
        client.get(f"/v1/apps/{args.app}")  # an unknown app: the API's sentence
        if args.instance:
            raise ClientError(f"instance {args.instance!r} of app {args.app!r} not found")
        if args.process:
            raise ClientError(f"process {args.process!r} of app {args.app!r} has no instances")
        if not args.follow:
            raise ClientError(f"app {args.app!r} has no instances")
    return found


class Printer:
    """Writes lines as the user asked: instance prefix when several, time stamps when asked."""

    def __init__(self, timestamps, prefix, out=sys.stdout, err=sys.stderr):
        self.timestamps = timestamps
        self.prefix = prefix
        self.out = out
        self.err = err

    def line(self, iid, line):
        """Print one :class:`nodeagent.logs.Line` of instance ``iid``."""
        head = f"{iid} | " if self.prefix else ""
        if self.timestamps and line.ts:
            head += line.ts + " "
        if line.stream == "sys":
            print(f"corral: {head}{line.text}", file=self.err, flush=True)
        else:
            self.out.write(head + line.text + "\n")

    def block(self, iid, data):
        """Print a block of raw log lines of instance ``iid`` (bytes, each line ending in a newline): in
        one write of bytes when it holds no line of corral's own, else line by line."""
        from nodeagent.logs import app_text, has_note, parse_line
        if has_note(data):
            for raw in data.decode("utf-8", errors="replace").split("\n")[:-1]:
                self.line(iid, parse_line(raw))
            self.out.flush()
            return
        out = app_text(data, self.timestamps, f"{iid} | ".encode() if self.prefix else b"")
        self.out.flush()
        binary = getattr(self.out, "buffer", None)
        if binary is None:   # a text stream of its own (tests)
            self.out.write(out.decode("utf-8", errors="replace"))
        else:
            binary.write(out)
            binary.flush()

    def note(self, text):
        """Something corral has to say (an instance ended, a stream failed), on stderr."""
        self.out.flush()
        print(f"corral: {text}", file=self.err, flush=True)


def _reader(client, inst, params, events):
    from corral.cli.stream import items, open_stream
    iid = inst["id"]
    try:
        _, r = open_stream(client, "GET", f"/v1/instances/{iid}/logs", params=params)
        with r:
            for item in items(r):
                if item.get("data"):
                    data = item["data"]
                    events.put(("data", iid, data if isinstance(data, bytes) else data.encode("utf-8")))
                if item.get("caught_up"):
                    events.put(("caught_up", iid, None))
                if "end" in item:
                    events.put(("end", iid, item))
                    return
        events.put(("end", iid, {"end": "the stream ended early", "error": True}))
    except ClientError as e:
        events.put(("end", iid, {"end": str(e), "error": True}))


def _start(client, inst, params, events):
    import threading
    t = threading.Thread(target=_reader, args=(client, inst, params, events), daemon=True)
    t.start()


def run(args, client):
    """``corral logs``: 0 when every stream ended well (or on Ctrl-C while following), else 1."""
    import queue
    from nodeagent.logs import merge, parse_line
    params = {"follow": "1" if args.follow else "0", "previous": "1" if args.previous else "0", "bytes": "1"}
    if args.tail is not None:
        params["tail"] = str(args.tail)
    if args.since:
        from corral.spec.quantities import parse_duration
        params["since"] = str(parse_duration(args.since))
    insts = matching(client, args)
    printer = Printer(args.timestamps, prefix=args.instance is None and len(insts) > 1)
    events = queue.Queue(maxsize=64)  # a slow terminal holds the readers back, not memory
    for inst in insts:
        _start(client, inst, params, events)
    pending = {i["id"] for i in insts}      # backlog not complete yet
    backlog = {i["id"]: [] for i in insts}
    open_ids = set(pending)
    seen = set(pending)
    failed = False
    next_poll = time.monotonic() + POLL_INSTANCES

    def flush_backlog():
        for iid, line in merge(sorted(backlog.items())):
            printer.line(iid, line)
        backlog.clear()
        printer.out.flush()

    try:
        while open_ids or (args.follow and args.instance is None):
            try:
                kind, iid, payload = events.get(timeout=0.5)
            except queue.Empty:
                kind = None
            if kind == "data":
                if iid in backlog and len(insts) > 1:   # merged by time with the other instances' backlogs
                    backlog[iid].extend(map(parse_line, payload.decode("utf-8", errors="replace").split("\n")[:-1]))
                else:
                    printer.block(iid, payload)
            elif kind in ("caught_up", "end"):
                pending.discard(iid)
                if not pending and backlog:
                    flush_backlog()
                if kind == "end":
                    open_ids.discard(iid)
                    if payload.get("error"):
                        failed = True
                        printer.note(f"instance {iid}: {payload['end']}")
                    elif args.follow:
                        printer.note(payload["end"])
            if args.follow and args.instance is None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + POLL_INSTANCES
                try:
                    fresh = [i for i in matching(client, args) if i["id"] not in seen]
                except ClientError:
                    fresh = []
                for inst in fresh:
                    seen.add(inst["id"])
                    open_ids.add(inst["id"])
                    printer.prefix = True
                    printer.note(f"following instance {inst['id']} (new)")
                    _start(client, inst, dict(params, tail="-1"), events)
        if backlog:
            flush_backlog()
    except KeyboardInterrupt:
        printer.out.flush()
        return 0
    return 1 if failed else 0
