"""`corral`: the one command. Parses arguments and dispatches; errors are one sentence.

User verbs (apply, diff, get, describe, delete, ...) talk to the API and never
import eventlet. Daemon verbs (reconciler, agent, builder, router, up) patch eventlet
first, before importing anything that touches sockets or threads.

Every command builds the whole parser, so building it imports only the small
verb modules; what a verb needs (requests, jsonschema through the spec loader,
yaml, eventlet, the daemons) is imported inside the functions that use it.
`corral --help` and the read-only verbs load none of those four
(tests/unit/test_cli_help.py checks it; bench/cli.py times it).
"""
import argparse
import os
import signal
import sys

from corral.cli import router as router_command
from corral.cli.verbs import EXAMPLE, VerbHelp, add_verb, nested

OUTPUTS = ["table", "wide", "json", "yaml"]
SECRET_HELP = ("the cluster key's file, for compatibility only: on the command line its path is readable by "
               "every process of the machine; set CORRAL_SECRET_FILE instead (default /etc/corral/secret)")


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
    """The whole `corral` argument parser. Building it imports no verb's dependencies (only the
    small modules that add their verbs), so that `corral --help` and every verb start fast."""
    p = argparse.ArgumentParser(
        prog="corral", description="Run Python apps on your own servers, declaratively.",
        epilog=EXAMPLE + "\n  corral up\n  corral apply -f manifests/examples/hello.yaml --wait\n  corral get apps\n\n"
               "`corral COMMAND --help` says more of each; docs/CLI.md is the contract.",
        formatter_class=VerbHelp)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    _manifest_verbs(sub)
    _read_verbs(sub)
    from corral.cli import doctor, exec as exec_command, logs, nodes, rollout, runs, services, tokens, units, version
    rollout.add_parser(sub)
    runs.add_parser(sub)
    services.add_parser(sub)
    nodes.add_parser(sub)
    logs.add_parser(sub)
    exec_command.add_parser(sub)
    version.add_parser(sub)
    units.add_parser(sub)
    doctor.add_parser(sub)
    tokens.add_parser(sub)
    _delete_verb(sub)
    _state_verbs(sub)
    _up_verb(sub)
    _reconciler_verb(sub)
    _agent_verb(sub)
    _builder_verb(sub)
    router_command.add_parser(sub, SECRET_HELP)
    return p


def _manifest_verbs(sub):
    """``apply`` and ``diff``: the verbs that read manifests."""
    a = add_verb(sub, "apply", "create or update apps (and GitSources) from manifests, all or none",
                 ["corral apply -f manifests/examples/hello.yaml --wait"],
                 description="Create or update apps (and GitSources) from manifests: all documents or none. Each "
                             "manifest is validated first (errors name the file, line and field), each app's "
                             "source folder is packed and uploaded, then the documents are applied in one request.")
    a.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                   help="a manifest file, a folder of them (every *.yaml, *.yml), or - for stdin (repeatable)")
    a.add_argument("--dry-run", action="store_true", help="validate and show what would change; write nothing")
    a.add_argument("--wait", action="store_true",
                   help="return when every app applied is available at its new revision, or fail with the reason")
    a.add_argument("--timeout", default="5m", metavar="DURATION", help="how long --wait waits (default 5m)")

    d = add_verb(sub, "diff", "show what apply would change (exit 0: nothing, 1: changes, 2: error)",
                 ["corral diff -f manifests/examples/hello.yaml"])
    d.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                   help="a manifest file, a folder of them, or - for stdin (repeatable)")


def _read_verbs(sub):
    """``get``, ``describe`` and ``sync``."""
    g = add_verb(sub, "get", "list apps, instances, nodes, builds, events, runs, routes, gitsources, services or "
                             "backups, or show one",
                 ["corral get apps", "corral get instances hello -o wide", "corral get nodes -o json",
                  "corral get routes", "corral get backups hello"])
    g.add_argument("resource",
                   help="apps | instances | nodes | builds | events | runs | routes | gitsources | services | backups "
                        "(or the singular)")
    g.add_argument("name", nargs="?",
                   help="only this one (an app's name also selects its instances, its events, its routes, its "
                        "services and its backups)")
    g.add_argument("-o", "--output", choices=OUTPUTS, default="table",
                   help="table (default), wide (more columns), or the API's JSON or YAML (the stable contract)")
    g.add_argument("-w", "--watch", action="store_true", help="after the list, print each change as it happens (apps, instances, nodes, events: "
                        "a row with ADDED/MODIFIED/DELETED first; -o json: one change a line)")
    g.add_argument("--show-secrets", action="store_true",
                   help="apps: show env values (by default each is <redacted sha256:...>, a digest of it)")

    s = add_verb(sub, "describe", "show an app's, a GitSource's or a service's spec, status and recent events",
                 ["corral describe app hello"])
    kinds = nested(s, "kind", "KIND")
    sa = add_verb(kinds, "app", "show an app's spec, status, conditions, instances and recent events",
                  ["corral describe app hello"], aliases=["apps"])
    sa.add_argument("name", help="the app's name")
    sg = add_verb(kinds, "gitsource", "show a GitSource's spec, commits, last error, webhook, apps and events",
                  ["corral describe gitsource fleet"], aliases=["gitsources"])
    sg.add_argument("name", help="the GitSource's name")
    sv = add_verb(kinds, "service", "show an app's service: its server, state, credential, backups and events",
                  ["corral describe service hello/db"], aliases=["services"])
    sv.add_argument("name", metavar="APP/NAME", help="the service, as app/name")

    y = add_verb(sub, "sync", "sync a GitSource now and wait for the outcome (exit 1 when its commit was refused)",
                 ["corral sync fleet"])
    y.add_argument("name", help="the GitSource's name")
    y.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the leader has synced it (default: yes)")
    y.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="seconds --wait waits (default 120)")


def _delete_verb(sub):
    """``delete``: an app or a GitSource, by name or by manifest."""
    x = add_verb(sub, "delete", "stop and remove an app, or remove a GitSource (by name, or by its manifest)",
                 ["corral delete app hello", "corral delete -f manifests/examples/hello.yaml"],
                 description="Stop an app's instances (each with its grace) and remove it, or remove a GitSource; "
                             "by kind and name, or by the manifests that define them (-f).")
    _delete_flags(x)
    x.set_defaults(name=None)
    targets = nested(x, "kind", "KIND")
    targets.required = False
    xa = add_verb(targets, "app", "stop an app's instances (each with its grace) and remove the app",
                  ["corral delete app hello --timeout 2m"], aliases=["apps"])
    xa.add_argument("name", help="the app's name")
    _delete_flags(xa, nested_verb=True, cascade=False)
    xg = add_verb(targets, "gitsource", "remove a GitSource; its apps keep running, managed by hand, "
                                        "unless --cascade deletes them too",
                  ["corral delete gitsource fleet --cascade"], aliases=["gitsources"])
    xg.add_argument("name", help="the GitSource's name")
    _delete_flags(xg, nested_verb=True)


def _state_verbs(sub):
    """``backup`` and ``restore`` of the control plane, and ``rotate-layer-key``."""
    k = add_verb(sub, "backup", "write the control-plane state (apps, sources, history) to a dated file",
                 ["corral backup --to /tmp"])
    k.add_argument("--to", metavar="DIR", help="the folder to write it in (default: the current one)")
    k.add_argument("--store", metavar="DSN", help="read this store directly instead of asking the API")

    e = add_verb(sub, "restore", "load a backup file into an empty store, before any daemon runs on it",
                 ["corral restore corral-backup-20261126T152038Z.json.gz --store sqlite:///var/lib/corral/corral.db"])
    e.add_argument("file", metavar="FILE", help="a file `corral backup` wrote")
    e.add_argument("--store", required=True, metavar="DSN",
                   help="the store to load it into: sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    e.add_argument("--force", action="store_true", help="replace the state of a store that is not empty")

    r = add_verb(sub, "rotate-layer-key", "make a new key for the layer URLs the leader signs (nothing stops)",
                 ["corral rotate-layer-key --store postgresql://corral@db1:5432/corral"])
    r.add_argument("--store", default=None, metavar="DSN", help="the store (default $CORRAL_STORE)")


def _up_verb(sub):
    """``up``: the all-in-one cluster."""
    u = add_verb(sub, "up", "run an all-in-one cluster on this machine, in the foreground (Ctrl-C stops it)",
                 ["corral up --apply manifests/examples/hello.yaml"],
                 description="Run an all-in-one cluster on this machine, in the foreground: reconcilers, a builder "
                             "and node agents, each its own process, on the embedded SQLite store unless --store "
                             "names PostgreSQL. It writes the client config that the other commands read; Ctrl-C "
                             "stops everything, instances included.")
    u.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where the cluster keeps its state (default $XDG_DATA_HOME/corral, ~/.local/share/corral)")
    u.add_argument("--nodes", type=int, default=2, metavar="N", help="node agents to run (default 2)")
    u.add_argument("--reconcilers", type=int, default=2, metavar="N", help="reconcilers to run (default 2)")
    u.add_argument("--store", default=None, metavar="DSN", help="a store DSN (default: SQLite in the data dir)")
    u.add_argument("--apply", action="append", default=[], metavar="FILE",
                   help="apply this manifest once up (repeatable)")
    u.add_argument("--base-port", type=int, default=7070, metavar="PORT",
                   help="API of reconciler i on BASE+10i, its bus on BASE+10i+1, its route feed on BASE+10i+3, the "
                        "builder on BASE+2 (default 7070)")
    u.add_argument("--router-port", type=int, default=None, metavar="PORT",
                   help="where the router listens, its health on PORT+1 (default BASE+1010: 8080)")
    u.add_argument("--settings", metavar="FILE", help="a YAML file of timings (see corral/settings.py)")


def _reconciler_verb(sub):
    """``reconciler``: one reconciler daemon."""
    r = add_verb(sub, "reconciler", "run one reconciler daemon: the API, and the control loop while it leads",
                 ["corral reconciler --store sqlite:///var/lib/corral/corral.db --api 0.0.0.0:7070 "
                  "--bus tcp://0.0.0.0:7071"])
    r.add_argument("--store", default=None, metavar="DSN",
                   help="the store DSN (sqlite:///PATH or postgresql://...; default $CORRAL_STORE, "
                        "which keeps a password off the command line)")
    r.add_argument("--api", default="127.0.0.1:7070", metavar="HOST:PORT",
                   help="where the API listens (default 127.0.0.1:7070)")
    r.add_argument("--bus", default="tcp://127.0.0.1:7071", metavar="tcp://HOST:PORT",
                   help="where the agents' bus listens (default tcp://127.0.0.1:7071)")
    r.add_argument("--routes", default="tcp://127.0.0.1:7073", metavar="tcp://HOST:PORT",
                   help="where the routers subscribe to its route table (default tcp://127.0.0.1:7073)")
    r.add_argument("--cluster-domain", default="localhost", metavar="DOMAIN",
                   help="an app with no routes and one port process is served at APP.DOMAIN (default localhost)")
    r.add_argument("--secret-file", default=None, metavar="FILE", help=SECRET_HELP)
    r.add_argument("--name", default=None, help="its name in the lease and in events (default: --api)")
    _bus_encryption_flag(r, "its bus and route feed")
    r.add_argument("--settings", metavar="FILE", help="a YAML file of timings (see corral/settings.py)")
    r.add_argument("--tls-cert", metavar="FILE", help="serve the API over HTTPS with this certificate (PEM, "
                                                      "its chain after it); needs --tls-key")
    r.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM); needs --tls-cert")


def _bus_encryption_flag(p, what):
    """``--bus-encryption``: CurveZMQ on ``what`` (corral/wire/curve.py), required by default; ``off`` only
    while 0.1.0 daemons, which speak cleartext, remain (docs/PRODUCTION.md's upgrades)."""
    p.add_argument("--bus-encryption", choices=("required", "off"), default="required",
                   help=f"CurveZMQ on {what}; every reconciler, agent and router must agree "
                        "(default required; off only while daemons of 0.1.0 remain)")


def _agent_verb(sub):
    """``agent``: one node agent daemon."""
    n = add_verb(sub, "agent", "run one node agent daemon",
                 ["corral agent --name node-1 --reconciler tcp://10.0.0.1:7071 --reconciler tcp://10.0.0.2:7071 "
                  "--data-dir /var/lib/corral/node"],
                 description="Run one node agent. SIGINT stops every instance of the node, then the agent; "
                             "SIGTERM (or SIGKILL) ends only the agent: the instances keep running and the "
                             "next agent on the same --data-dir adopts them.")
    n.add_argument("--name", required=True, help="the node's name")
    n.add_argument("--reconciler", action="append", required=True, metavar="tcp://HOST:PORT",
                   help="a reconciler's bus (repeatable: one for each reconciler)")
    n.add_argument("--data-dir", required=True, metavar="DIR", help="where the agent keeps its state and logs")
    n.add_argument("--secret-file", default=None, metavar="FILE", help=SECRET_HELP)
    _bus_encryption_flag(n, "its connections to the reconcilers' buses")
    n.add_argument("--join", default=None, metavar="TOKEN",
                   help="a join token (corral node join-token), exchanged once for the node's own key, kept in "
                        "DATA_DIR/credential and used on every later start instead of the cluster key "
                        "(default $CORRAL_JOIN_TOKEN)")
    n.add_argument("--label", action="append", type=_label, default=[], metavar="KEY=VALUE",
                   help="a label of the node, for placement (repeatable)")
    n.add_argument("--labels-file", metavar="FILE", help="a YAML mapping of labels; --label wins over it")
    n.add_argument("--images-dir", default="/var/lib/corral/images", metavar="DIR",
                   help="where images are unpacked (default /var/lib/corral/images)")
    n.add_argument("--address", default="127.0.0.1", help="the address instances are reached at (default 127.0.0.1)")
    n.add_argument("--metrics", default="127.0.0.1:7075", metavar="HOST:PORT",
                   help="where its Prometheus /metrics is served (default 127.0.0.1:7075, loopback only)")
    n.add_argument("--no-app-users", dest="app_users", action="store_false", default=None,
                   help="run apps as the agent's user (as root, each app runs as its own system user corral-APP)")
    n.add_argument("--settings", metavar="FILE", help="a YAML file of timings (see corral/settings.py)")


def _builder_verb(sub):
    """``builder``: one builder daemon."""
    b = add_verb(sub, "builder", "run one builder daemon: build jobs to virtualenv images, served over HTTP",
                 ["corral builder --store sqlite:///var/lib/corral/corral.db --listen 0.0.0.0:7072 "
                  "--cache-dir /var/cache/corral"])
    b.add_argument("--store", default=None, metavar="DSN",
                   help="the store DSN, where build jobs are queued (default $CORRAL_STORE)")
    b.add_argument("--listen", default="127.0.0.1:7072", metavar="HOST:PORT",
                   help="where images are served (default 127.0.0.1:7072)")
    b.add_argument("--cache-dir", required=True, metavar="DIR", help="where layers and wheel caches are kept")
    b.add_argument("--images-dir", default="/var/lib/corral/images", metavar="DIR",
                   help="where finished images are put (default /var/lib/corral/images)")
    b.add_argument("--secret-file", default=None, metavar="FILE", help="not used (the builder needs no key)")
    b.add_argument("--name", default=None, help="its name in build records (default: --listen)")
    b.add_argument("--advertise", default=None, metavar="HOST:PORT",
                   help="the address agents fetch images from (default: --listen)")
    b.add_argument("--metrics", default="127.0.0.1:7074", metavar="HOST:PORT",
                   help="where its Prometheus /metrics is served (default 127.0.0.1:7074, loopback only)")
    b.add_argument("--layer-cache-size", type=_bytes, default=None, metavar="BYTES",
                   help="prune layers built here, least recently used first, to this size (like 20Gi; 0: no limit)")
    b.add_argument("--wheel-cache-size", type=_bytes, default=None, metavar="BYTES",
                   help="prune the wheel caches (uv's, pip's) likewise (like 10Gi; 0: no limit)")
    b.add_argument("--settings", metavar="FILE", help="a YAML file of timings (see corral/settings.py)")


def _delete_flags(p, nested_verb=False, cascade=True):
    """The flags of `corral delete`, on the verb itself (for -f) and again on its nested verbs, so that
    they may come after the name too. There they have no default: the verb's default stands unless given."""
    default = (lambda value: argparse.SUPPRESS) if nested_verb else (lambda value: value)
    if not nested_verb:
        p.add_argument("-f", "--filename", action="append", metavar="PATH",
                       help="delete what these manifests define (a file, a folder, or - for stdin; repeatable)")
    if cascade:
        p.add_argument("--cascade", action="store_true", default=default(False),
                       help="a GitSource's apps are deleted with it (default: they keep running, managed by hand)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=default(True),
                   help="wait until the apps deleted are gone (default: yes)")
    p.add_argument("--timeout", default=default("5m"), metavar="DURATION",
                   help="how long --wait waits (default 5m)")


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
    if args.command in ("agent", "reconciler", "builder"):
        # A stop asked while the daemon imports and starts is kept and honoured once it is up: the agent's
        # SIGINT then stops the instances it adopts, where Python's default would end it at once and leave them
        # running; and a SIGINT that lands inside eventlet's monkey-patching is swallowed there (it prints the
        # KeyboardInterrupt and goes on), so a reconciler stopped as it started would run on.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda signum, frame: early.append(signum))
    from corral import green
    green.patch()
    from corral.settings import load_timings
    timings = load_timings(args.settings)
    if args.command == "reconciler":
        from corral.apitls import check_pair
        from reconciler.daemon import run
        refused = check_pair(args.tls_cert, args.tls_key)
        if refused:
            raise ValueError(refused)
        name = args.name or args.api
        _daemon_logging(f"reconciler/{name}")
        from corral.settings import load_services
        run(store_dsn=args.store, api=args.api, bus=args.bus, secret_file=args.secret_file,
            name=name, timings=timings, routes=args.routes, cluster_domain=args.cluster_domain,
            services=load_services(args.settings), bus_encryption=args.bus_encryption, stop=early,
            tls=(args.tls_cert, args.tls_key) if args.tls_cert else None)
    elif args.command == "agent":
        from nodeagent.daemon import run
        _daemon_logging(f"agent/{args.name}")
        run(name=args.name, reconcilers=args.reconciler, data_dir=args.data_dir,
            secret_file=args.secret_file, images_dir=args.images_dir, labels=_agent_labels(args),
            address=args.address, timings=timings, app_users=args.app_users, stop=early, metrics=args.metrics,
            bus_encryption=args.bus_encryption, join_token=args.join or os.environ.pop("CORRAL_JOIN_TOKEN", None))
    elif args.command == "builder":
        from builder.daemon import run
        name = args.name or args.listen
        _daemon_logging(f"builder/{name}")
        run(store_dsn=args.store, listen=args.listen, cache_dir=args.cache_dir, images_dir=args.images_dir,
            name=name, advertise=args.advertise, timings=timings, layer_cache_bytes=args.layer_cache_size,
            wheel_cache_bytes=args.wheel_cache_size, metrics=args.metrics, stop=early)
    elif args.command == "router":
        _daemon_logging("router")
        router_command.run(args, timings)
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
        if args.command in ("reconciler", "agent", "builder", "router", "up"):
            return run_daemon(args) or 0
        if args.command == "version":
            from corral.cli import version
            return version.run(args)
        if args.command == "install-units":
            from corral.cli import units
            return units.run(args)
        if args.command == "doctor":
            from corral.cli import doctor
            return doctor.run(args)
        if args.command in ("backup", "restore"):
            from corral.cli import backup
            return backup.run(args)
        if args.command == "router-credential":
            return router_command.make_credential(args)
        if args.command == "rotate-layer-key":
            from corral.cli import layerkey
            return layerkey.run(args)
        from corral.cli import commands, gitops, nodes, rollout, runs, services, tokens
        from corral.cli.client import Client, load_config
        client = Client(*load_config())
        handler = (services.handler_for(args) or gitops.handler_for(args) or rollout.handler_for(args)
                   or nodes.handler_for(args) or runs.handler_for(args) or tokens.handler_for(args)
                   or _stream_handler(args) or getattr(commands, f"cmd_{args.command}"))
        return handler(args, client)
    except (ClientError, ValueError, OSError) as e:   # a SpecError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2 if args.command == "diff" else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
