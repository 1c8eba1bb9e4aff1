"""`corral install-units`: write (or print) the systemd unit of one of corral's daemons.

The unit's text is decided by :mod:`corral.units`; this verb fills in what
only this machine knows (the corral script of the running venv, the host's
name), writes ``/etc/systemd/system/corral-<role>.service`` and, when it is
not there yet, the role's environment file (0600), and says what is left to
do (the system user, the key, ``systemctl enable --now``).
"""
import os
import socket
import sys

from corral import private, units
from corral.cli.verbs import add_verb


def add_parser(sub):
    """Register `corral install-units` on the subparsers ``sub``."""
    p = add_verb(sub, "install-units", "write the systemd unit (and its environment file) of a reconciler, agent, "
                                       "builder or router on this machine, or print it",
                 ["corral install-units --role reconciler --store postgresql://corral@db1:5432/corral",
                  "corral install-units --role agent --reconciler tcp://10.0.0.1:7071 --reconciler "
                  "tcp://10.0.0.2:7071 --address 10.0.1.7",
                  "corral install-units --role builder --advertise 10.0.0.3:7072 --print",
                  "corral install-units --role router --reconciler tcp://10.0.0.1:7073 --reconciler tcp://10.0.0.2:7073"])
    p.add_argument("--role", required=True, choices=units.ROLES, help="which daemon: reconciler, agent, builder or router")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the unit on stdout and write nothing")
    p.add_argument("--name", default=None, help="the daemon's (or node's) name (default: this host's name)")
    p.add_argument("--exec", dest="exe", default=None, metavar="PATH",
                   help="the corral script the unit runs (default: the one beside this Python)")
    p.add_argument("--user", default=None,
                   help="the user it runs as (default: corral; root for a builder, which runs each app's build "
                        "as a user of its own, and for an agent)")
    p.add_argument("--api", default="0.0.0.0:7070", metavar="HOST:PORT", help="reconciler: its API (default 0.0.0.0:7070)")
    p.add_argument("--bus", default="tcp://0.0.0.0:7071", metavar="tcp://HOST:PORT",
                   help="reconciler: its bus (default tcp://0.0.0.0:7071)")
    p.add_argument("--routes", default="tcp://0.0.0.0:7073", metavar="tcp://HOST:PORT",
                   help="reconciler: its route feed, for the routers (default tcp://0.0.0.0:7073)")
    p.add_argument("--listen", default=None, metavar="HOST:PORT",
                   help="builder: where it serves images (default 0.0.0.0:7072); router: where it serves HTTP "
                        "(default 0.0.0.0:80)")
    p.add_argument("--health", default="127.0.0.1:8081", metavar="HOST:PORT",
                   help="router: its health JSON (default 127.0.0.1:8081)")
    p.add_argument("--advertise", default=None, metavar="HOST:PORT", help="builder: the address agents fetch from")
    p.add_argument("--reconciler", dest="reconcilers", action="append", default=[], metavar="tcp://HOST:PORT",
                   help="agent: a reconciler's bus (:7071); router: a reconciler's route feed (:7073); repeatable, "
                        "one for each reconciler")
    p.add_argument("--address", default=None, help="agent: the address instances are reached at (this server's)")
    p.add_argument("--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                   help="agent: a label of the node, for placement (repeatable)")
    p.add_argument("--store", default=None, metavar="DSN",
                   help="reconciler, builder: the store DSN, written to the environment file (never the unit)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="reconciler: /var/lib/corral/reconciler; agent: /var/lib/corral/node (defaults)")
    p.add_argument("--images-dir", default=units.IMAGES, metavar="DIR",
                   help=f"agent, builder: the images (default {units.IMAGES}, the same on every server)")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="builder: its caches (default /var/cache/corral/builder)")
    p.add_argument("--env-file", default=None, metavar="FILE", help="its environment file (default /etc/corral/ROLE.env)")
    p.add_argument("--settings", default=None, metavar="FILE", help="a YAML file of timings (see corral/settings.py)")
    p.add_argument("--bus-encryption", choices=("required", "off"), default="required",
                   help="reconciler, agent, router: CurveZMQ on the bus (default required; off while agents "
                        "of 0.1.0 remain, see docs/PRODUCTION.md's upgrades)")
    p.add_argument("--join", default=None, metavar="TOKEN",
                   help="agent: a join token (corral node join-token), written to its environment file instead of "
                        "the key's path: the node gets a key of its own on its first start and never holds the "
                        "cluster key")
    p.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR",
                   help="where the unit is written (default /etc/systemd/system)")


def default_exe():
    """The corral script beside this interpreter (the venv's), else this process's own script."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "corral")
    return beside if os.access(beside, os.X_OK) else os.path.abspath(sys.argv[0])


def options(args):
    """The unit's :class:`corral.units.Options` from the verb's arguments."""
    return units.Options(role=args.role, exe=args.exe or default_exe(), name=args.name or socket.gethostname(),
                         api=args.api, bus=args.bus, routes=args.routes, listen=args.listen, health=args.health, advertise=args.advertise,
                         reconcilers=tuple(args.reconcilers), address=args.address, labels=tuple(args.labels),
                         store=args.store,
                         data_dir=args.data_dir, images_dir=args.images_dir, cache_dir=args.cache_dir,
                         env_file=args.env_file, settings=args.settings, user=args.user,
                         bus_encryption=args.bus_encryption, join_token=args.join)


def held_in_env(role, joined):
    """What the role's environment file holds, in words. Pure."""
    return {"agent": "the join token" if joined else "the key's path", "builder": "the store DSN",
            "router": "the router credential's path", "reconciler": "the key's path and the store DSN"}[role]


def next_steps(role, user):
    """What is left to do by hand before the unit starts, one line each. Pure."""
    steps = []
    if user != "root":
        steps.append(f"useradd --system --no-create-home --shell /usr/sbin/nologin {user} (once)")
    if role == "router":
        steps.append(f"on a reconciler's host: corral router-credential --output router.credential; copy it here to "
                     f"{units.ROUTER_CREDENTIAL}, then chown {user} {units.ROUTER_CREDENTIAL}; chmod 0600 "
                     f"{units.ROUTER_CREDENTIAL} (a router never holds the cluster key)")
    elif role != "builder" and user != "root":
        steps.append(f"make the key readable by it: chgrp {user} {units.SECRET}; chmod 0640 {units.SECRET}")
    return steps


def write_new_private(path, text):
    """Write ``text`` to a new file ``path``, mode 0600, refusing to replace one that is there."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def run(args):
    """Print the unit, or write it (and a missing environment file) and say what is left to do."""
    o = options(args)
    text = units.unit(o)
    if args.print_only:
        sys.stdout.write(text)
        return 0
    path = os.path.join(args.unit_dir, units.unit_name(args.role))
    os.makedirs(args.unit_dir, exist_ok=True)
    private.replace_with(path, lambda f: f.write(text.encode("utf-8")), 0o644)
    print(f"wrote {path}")
    env = units._defaults(o).env_file
    if os.path.exists(env):
        print(f"kept {env} as it is (it may hold the store's password); compare it with `--print` and docs/PRODUCTION.md")
        if args.join:
            print(f"the join token is not in it: remove {env} and run this again, or put "
                  f"{units.ENV_JOIN}=TOKEN in it in place of {units.ENV_SECRET}", file=sys.stderr)
    else:
        write_new_private(env, units.env_file(o))
        print(f"wrote {env} (0600: {held_in_env(args.role, bool(args.join))})")
    user = units._defaults(o).user
    for step in next_steps(args.role, user):
        print(f"next: {step}")
    print(f"then: systemctl daemon-reload && systemctl enable --now {units.unit_name(args.role)}")
    return 0
