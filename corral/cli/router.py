"""`corral router`: the verb and its flags; the daemon itself is router/daemon.py."""
import os

from corral.cli.verbs import add_verb


def add_parser(sub, secret_help):
    """Add `corral router` to the subcommands ``sub``."""
    r = add_verb(sub, "router", "run the HTTP router: apps reached by host name, through ready instances only",
                 ["corral router --listen 0.0.0.0:80 --reconciler tcp://10.0.0.1:7073 "
                  "--reconciler tcp://10.0.0.2:7073"],
                 description="Run the front door: an HTTP/1.1 proxy that routes each request by its Host and "
                             "path to a ready instance of the app that claims them, following the route table "
                             "every reconciler publishes (a snapshot, then deltas; no reload). One process per "
                             "--workers, sharing the port (SO_REUSEPORT). With no reconciler live it keeps "
                             "serving its last table, and its health says so.")
    r.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where clients connect (default 127.0.0.1:8080)")
    r.add_argument("--health", default="127.0.0.1:8081", metavar="HOST:PORT",
                   help="where the router's health (JSON: table, feeds, counters) answers (default 127.0.0.1:8081)")
    r.add_argument("--reconciler", action="append", default=[], metavar="tcp://HOST:PORT",
                   help="a reconciler's route feed (repeatable: one for each reconciler)")
    r.add_argument("--static", metavar="FILE",
                   help="serve this fixed table instead (JSON: {\"routes\": [{host, path, app, process, "
                        "backends: [{id, address, port}]}]})")
    r.add_argument("--tls", action="append", default=[], metavar="HOST=CERT,KEY",
                   help="serve HTTPS for HOST (exact or *.domain) with this certificate and key, chosen by SNI "
                        "(repeatable; the first is the default)")
    r.add_argument("--tls-listen", default="127.0.0.1:8443", metavar="HOST:PORT",
                   help="where HTTPS clients connect, with --tls (default 127.0.0.1:8443)")
    r.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="router processes sharing the port (default: one per core)")
    r.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="a network whose X-Forwarded-For and X-Request-Id are kept (repeatable; default none: "
                        "every client's own are replaced)")
    r.add_argument("--access-log", metavar="FILE", help="write one line per request here ('-': stderr)")
    r.add_argument("--connect-timeout", type=float, default=2.0, metavar="S",
                   help="a backend's connect, and its host's acknowledgement of what is sent, then the next "
                        "backend is tried (default 2)")
    r.add_argument("--response-timeout", type=float, default=60.0, metavar="S",
                   help="a backend's answer, then 504 (default 60)")
    r.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                   help="a kept-alive client's next request (default 60)")
    r.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="a client's whole request head from its first byte, then 408 (default 10)")
    r.add_argument("--feed-timeout", type=float, default=3.0, metavar="S",
                   help="a reconciler's feed silent this long is not live (it ticks every second; default 3)")
    r.add_argument("--credential", default=None, metavar="FILE",
                   help="the router's credential (corral router-credential wrote it; never the cluster key); "
                        "default $CORRAL_ROUTER_CREDENTIAL, else /etc/corral/router.credential")
    r.add_argument("--bus-encryption", choices=("required", "off"), default="required",
                   help="CurveZMQ on the route feeds, as the reconcilers have it (default required)")
    r.add_argument("--settings", metavar="FILE", help="a YAML file of timings (see corral/settings.py)")


    c = add_verb(sub, "router-credential", "write a router's credential: what it follows the route feeds with, "
                                           "instead of the cluster key",
                 ["corral router-credential --output /etc/corral/router.credential"],
                 description="Write the credential a router holds instead of the cluster key "
                             "(corral/wire/routercred.py): the key that checks the route feeds, the key pair the "
                             "feeds admit and the reconcilers' public key. Nothing else follows from it. Run it "
                             "where the cluster key is (a reconciler's host) and copy the file to the router hosts, "
                             "0600 and owned by the router's user.")
    c.add_argument("--secret-file", default=None, metavar="FILE", help=secret_help)
    c.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write it here (0600; an existing file is not replaced) instead of printing it")


def make_credential(args):
    """`corral router-credential`: print or write the router credential of the cluster key. ValueError,
    FileNotFoundError or FileExistsError with one sentence when the key or the output file is wrong."""
    import corral.green  # noqa: F401  (the keys' derivation takes ZeroMQ as eventlet's: this silences its banner)
    from corral.wire.keys import key_path, read_key
    from corral.wire.routercred import RouterCredential, save_credential
    credential = RouterCredential.of_cluster(read_key(key_path(args.secret_file)))
    if args.output is None:
        print(credential.text(), end="")
    else:
        save_credential(args.output, credential)
        print(f"router credential written to {args.output} (0600); give it to `corral router --credential`")
    return 0


def config(args, timings):
    """The router daemon's settings from its flags (ValueError names a bad one)."""
    from router.http import Limits
    from router.proxy import Timeouts
    from router.tls import parse_tls_option, server_context
    if not args.reconciler and not args.static:
        raise ValueError("corral router needs --reconciler (the route feeds) or --static FILE")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    tls = [parse_tls_option(t) for t in args.tls]
    if tls:
        server_context(tls)   # a file that cannot be loaded is one sentence now, not a worker dying later
    return {"listen": args.listen, "health": args.health, "reconcilers": args.reconciler,
            "tls": tls, "tls_listen": args.tls_listen,
            "static": args.static, "workers": args.workers, "trusted": args.trusted_proxy,
            "limits": Limits(), "max_connections": 10000, "feed_timeout": args.feed_timeout,
            "replay_window": timings.replay_window, "bus_encryption": args.bus_encryption,
            "timeouts": Timeouts(connect=args.connect_timeout, response=args.response_timeout,
                                 idle=args.idle_timeout, header=args.header_timeout)}


def run(args, timings):
    """Run the router daemon (blocking)."""
    import logging
    import sys
    from router.daemon import run as run_router
    cfg = config(args, timings)
    if args.access_log:
        access = logging.getLogger("corral.router.access")
        handler = logging.StreamHandler(sys.stderr) if args.access_log == "-" else logging.FileHandler(args.access_log)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    else:
        logging.getLogger("corral.router.access").setLevel(logging.WARNING)
    credential = None
    if not args.static:
        from corral.wire.keys import hide_process
        from corral.wire.routercred import credential_path, load_credential
        hide_process()
        credential = load_credential(credential_path(args.credential))
    run_router(cfg, credential)
