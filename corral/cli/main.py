"""`corral`: the one command. Parses arguments and dispatches; errors are one sentence.

User verbs (apply, diff, get, describe, delete) talk to the API and never
import eventlet. Daemon verbs (reconciler, agent, builder, up) patch eventlet
first, before importing anything that touches sockets or threads.
"""
import argparse
import signal
import sys


def _label(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r} is not of the form key=value")
    return key, value


def _bytes(text):
    """A size flag's value in bytes: digits, or a number with Ki, Mi or Gi."""
    from corral.spec.quantities import parse_memory
    try:
        return parse_memory(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (bytes, or a number with Ki, Mi or Gi, like 20Gi)") from None


def parser():
    p = argparse.ArgumentParser(prog="corral", description="Run Python apps on your own servers, declaratively.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    a = sub.add_parser("apply", help="create or update apps from manifests")
    a.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                   help="a manifest file, a folder of them, or - for stdin (repeatable)")
    a.add_argument("--dry-run", action="store_true", help="validate and show what would change; write nothing")
    a.add_argument("--wait", action="store_true", help="return when every app applied is available")
    a.add_argument("--timeout", default="5m", help="how long --wait waits (default 5m)")

    d = sub.add_parser("diff", help="what apply would change (exit 0: none, 1: changes, 2: error)")
    d.add_argument("-f", "--filename", action="append", required=True, metavar="PATH")

    g = sub.add_parser("get", help="list apps, instances, nodes, builds or events")
    g.add_argument("resource", help="apps | instances | nodes | builds | events | gitsources")
    g.add_argument("name", nargs="?")
    g.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    g.add_argument("-w", "--watch", action="store_true", help="keep printing as it changes")

    s = sub.add_parser("describe", help="spec, status, conditions, instances and events of an app")
    s.add_argument("kind", help="app | gitsource")
    s.add_argument("name")

    y = sub.add_parser("sync", help="sync a GitSource now, and wait for the outcome")
    y.add_argument("name")
    y.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the leader has synced it (default: yes)")
    y.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")

    from corral.cli import nodes, rollout
    rollout.add_parser(sub)
    nodes.add_parser(sub)
    from corral.cli import exec as exec_command, logs
    logs.add_parser(sub)
    exec_command.add_parser(sub)

    x = sub.add_parser("delete", help="stop an app's instances (with their grace) and remove it; or remove a GitSource")
    x.add_argument("kind", nargs="?", help="app or gitsource")
    x.add_argument("name", nargs="?")
    x.add_argument("-f", "--filename", action="append", metavar="PATH")
    x.add_argument("--cascade", action="store_true",
                   help="a GitSource's apps are deleted with it (default: they keep running, managed by hand)")
    x.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the apps deleted are gone (default: yes)")
    x.add_argument("--timeout", default="5m")

    k = sub.add_parser("backup", help="write the control-plane state (apps, sources, history) to a dated file")
    k.add_argument("--to", metavar="DIR", help="the folder to write it in (default: the current one)")
    k.add_argument("--store", metavar="DSN", help="read this store directly instead of asking the API")

    e = sub.add_parser("restore", help="load a backup file into an empty store")
    e.add_argument("file", metavar="FILE")
    e.add_argument("--store", required=True, metavar="DSN")
    e.add_argument("--force", action="store_true", help="replace the state of a store that is not empty")

    u = sub.add_parser("up", help="an all-in-one cluster on this machine, in the foreground")
    u.add_argument("--data-dir", default=None, help="where the cluster keeps its state (default ~/.local/share/corral)")
    u.add_argument("--nodes", type=int, default=2)
    u.add_argument("--reconcilers", type=int, default=2)
    u.add_argument("--store", default=None, help="a store DSN (default: SQLite in the data dir)")
    u.add_argument("--apply", action="append", default=[], metavar="FILE", help="apply this manifest once up")
    u.add_argument("--base-port", type=int, default=7070,
                   help="API of reconciler i on BASE+10i, its bus on BASE+10i+1, the builder on BASE+2")
    u.add_argument("--settings", help="a YAML file of timings (see corral/settings.py)")

    r = sub.add_parser("reconciler", help="run one reconciler daemon")
    r.add_argument("--store", required=True)
    r.add_argument("--api", default="127.0.0.1:7070", metavar="HOST:PORT")
    r.add_argument("--bus", default="tcp://127.0.0.1:7071", metavar="tcp://HOST:PORT")
    r.add_argument("--secret-file", required=True)
    r.add_argument("--name", default=None)
    r.add_argument("--settings")

    n = sub.add_parser("agent", help="run one node agent daemon",
                       description="Run one node agent. SIGINT stops every instance of the node, then the agent; "
                                   "SIGTERM (or SIGKILL) ends only the agent: the instances keep running and the "
                                   "next agent on the same --data-dir adopts them.")
    n.add_argument("--name", required=True)
    n.add_argument("--reconciler", action="append", required=True, metavar="tcp://HOST:PORT")
    n.add_argument("--data-dir", required=True)
    n.add_argument("--secret-file", required=True)
    n.add_argument("--label", action="append", type=_label, default=[], metavar="KEY=VALUE")
    n.add_argument("--labels-file", metavar="FILE", help="a YAML mapping of labels; --label wins over it")
    n.add_argument("--images-dir", default="/var/lib/corral/images")
    n.add_argument("--address", default="127.0.0.1")
    n.add_argument("--no-app-users", dest="app_users", action="store_false", default=None,
                   help="run apps as the agent's user (as root, each app runs as its own system user corral-APP)")
    n.add_argument("--settings")

    b = sub.add_parser("builder", help="run one builder daemon")
    b.add_argument("--store", required=True)
    b.add_argument("--listen", default="127.0.0.1:7072", metavar="HOST:PORT")
    b.add_argument("--cache-dir", required=True)
    b.add_argument("--images-dir", default="/var/lib/corral/images")
    b.add_argument("--secret-file", required=True)
    b.add_argument("--name", default=None)
    b.add_argument("--advertise", default=None, metavar="HOST:PORT")
    b.add_argument("--layer-cache-size", type=_bytes, default=None, metavar="BYTES",
                   help="prune layers built here, least recently used first, to this size (like 20Gi; 0: no limit)")
    b.add_argument("--wheel-cache-size", type=_bytes, default=None, metavar="BYTES",
                   help="prune the wheel caches (uv's, pip's) likewise (like 10Gi; 0: no limit)")
    b.add_argument("--settings")
    return p


def _agent_labels(args):
    """The agent's labels: its --labels-file, then each --label over it."""
    from nodeagent.facts import labels_from_file
    labels = labels_from_file(args.labels_file) if args.labels_file else {}
    labels.update(dict(args.label))
    return labels


def _daemon_logging(name):
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")


def run_daemon(args):
    """Patch eventlet, then run the daemon the arguments name (blocking)."""
    early = []
    if args.command == "agent":
        # A stop asked while the agent imports and starts is kept and honoured once it is up: SIGINT then
        # stops the instances it adopts, where Python's default would end it at once and leave them running.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda signum, frame: early.append(signum))
    from corral import green
    green.patch()
    from corral.settings import load_timings
    timings = load_timings(args.settings)
    if args.command == "reconciler":
        from reconciler.daemon import run
        name = args.name or args.api
        _daemon_logging(f"reconciler/{name}")
        run(store_dsn=args.store, api=args.api, bus=args.bus, secret_file=args.secret_file,
            name=name, timings=timings)
    elif args.command == "agent":
        from nodeagent.daemon import run
        _daemon_logging(f"agent/{args.name}")
        run(name=args.name, reconcilers=args.reconciler, data_dir=args.data_dir,
            secret_file=args.secret_file, images_dir=args.images_dir, labels=_agent_labels(args),
            address=args.address, timings=timings, app_users=args.app_users, stop=early)
    elif args.command == "builder":
        from builder.daemon import run
        name = args.name or args.listen
        _daemon_logging(f"builder/{name}")
        run(store_dsn=args.store, listen=args.listen, cache_dir=args.cache_dir, images_dir=args.images_dir,
            name=name, advertise=args.advertise, timings=timings, layer_cache_bytes=args.layer_cache_size,
            wheel_cache_bytes=args.wheel_cache_size)
    elif args.command == "up":
        from corral.cli.up import up
        return up(args)
    return 0


def _stream_handler(args):
    """The handler of ``logs`` and ``exec`` (streamed through the API), else None."""
    from corral.cli import exec as exec_command, logs
    return {"logs": logs.run, "exec": exec_command.run}.get(args.command)


def main(argv=None):
    args = parser().parse_args(argv)
    from corral.cli.client import ClientError
    try:
        if args.command in ("reconciler", "agent", "builder", "up"):
            return run_daemon(args) or 0
        if args.command in ("backup", "restore"):
            from corral.cli import backup
            return backup.run(args)
        from corral.cli import commands, gitops, nodes, rollout
        from corral.cli.client import Client, load_config
        client = Client(*load_config())
        handler = (gitops.handler_for(args) or rollout.handler_for(args) or nodes.handler_for(args)
                   or _stream_handler(args) or getattr(commands, f"cmd_{args.command}"))
        return handler(args, client)
    except (ClientError, ValueError, OSError) as e:   # a SpecError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2 if args.command == "diff" else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
