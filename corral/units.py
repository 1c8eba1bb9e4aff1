"""systemd units of corral's daemons, and their environment files (pure: text in, text out).

One unit per role, ``corral-<role>.service``:

- ``reconciler`` runs as the system user ``corral``, hardened
  (``NoNewPrivileges``, ``ProtectSystem=strict`` with only its own data
  folders writable, ``PrivateTmp``, ``ProtectHome``): it needs no root.
- ``builder`` runs as root, hardened as the reconciler is but for ``/etc``,
  which it writes to make each app's build user (``useradd``): a build runs
  an app author's code (``setup.py``, a build backend), and only root can run
  each app's build as a user of its own (builder/buildusers.py); a builder
  that is not root runs every build as itself, where one app's build could
  poison another's caches. (``--user`` chooses another; never ``corral-...``,
  the agent's namespace of app users.)
- ``router`` runs as ``corral`` (it reads its credential, never the cluster
  key: corral/wire/routercred.py), hardened as the reconciler is, with the
  one capability it needs to listen on ports 80 and 443
  (``CAP_NET_BIND_SERVICE``, ambient and alone in its bounding set).
- ``agent`` runs as root (it makes app users, cgroups and private mounts)
  with ``KillMode=process``: a stop or restart of the agent ends the agent
  alone; the instances keep running and the next agent adopts them.
  ``systemctl kill --kill-whom=main --signal=SIGINT corral-agent`` stops the
  instances too.

Every unit restarts its daemon on failure. The key's path and the store DSN
(which may hold a password) come from an ``EnvironmentFile`` that only root
reads (``/etc/corral/<role>.env``), never from the command line, which every
process of the machine can read (corral/wire/keys.py). An agent given a join
token (``join_token``) has it there instead of the key's path: the node then
never holds the cluster key, only the key of its own that the token gets it on
its first start (corral/wire/credentials.py); the spent token may stay.
"""
import dataclasses
import re

ROLES = ("reconciler", "agent", "builder", "router")
ENV_DIR = "/etc/corral"
SECRET = "/etc/corral/secret"
ENV_SECRET, ENV_STORE = "CORRAL_SECRET_FILE", "CORRAL_STORE"   # corral/wire/keys.py reads them
ENV_JOIN = "CORRAL_JOIN_TOKEN"   # the agent reads it (corral agent --join)
ENV_ROUTER = "CORRAL_ROUTER_CREDENTIAL"   # the router reads it (corral/wire/routercred.py)
ROUTER_CREDENTIAL = "/etc/corral/router.credential"
STATE = "/var/lib/corral"
IMAGES = "/var/lib/corral/images"    # the same path on the builders and every node (DESIGN.md, Builder)
CACHE = "/var/cache/corral"
USERS = {"reconciler": "corral", "builder": "root", "agent": "root", "router": "corral"}
LISTEN = {"builder": "0.0.0.0:7072", "router": "0.0.0.0:80"}   # --listen when the operator names none

# What a word of ExecStart may hold: no whitespace, quotes, backslashes or systemd's % and $ specifiers.
_PLAIN = re.compile(r"^[A-Za-z0-9_@+=:,./\[\]-]+$")


@dataclasses.dataclass(frozen=True)
class Options:
    """What an operator chooses for a unit; every default is the production layout's (docs/PRODUCTION.md)."""

    role: str
    exe: str                                  # the corral script of the venv, e.g. /opt/corral/bin/corral
    name: str                                 # the daemon's name (reconciler, builder) or the node's (agent)
    api: str = "0.0.0.0:7070"                 # reconciler
    bus: str = "tcp://0.0.0.0:7071"           # reconciler
    routes: str = "tcp://0.0.0.0:7073"        # reconciler: its route feed, which the routers subscribe to
    listen: str | None = None                 # builder (0.0.0.0:7072), router (0.0.0.0:80)
    health: str = "127.0.0.1:8081"            # router: its health JSON
    advertise: str | None = None              # builder: HOST:PORT agents fetch images from
    reconcilers: tuple = ()                   # agent: tcp://HOST:7071 of each reconciler; router: tcp://HOST:7073
    address: str | None = None                # agent: the address instances are reached at
    labels: tuple = ()                        # agent: "key=value" labels of the node, for placement
    store: str | None = None                  # reconciler, builder: the DSN, written to the env file only
    data_dir: str | None = None               # reconciler: <STATE>/reconciler, agent: <STATE>/node
    images_dir: str = IMAGES                  # agent, builder
    cache_dir: str | None = None              # builder: <CACHE>/builder
    env_file: str | None = None               # default <ENV_DIR>/<role>.env
    settings: str | None = None               # a timings file (corral/settings.py)
    user: str | None = None                   # default USERS[role]
    bus_encryption: str = "required"          # reconciler, agent, router: CurveZMQ on the bus (corral/wire/curve.py)
    join_token: str | None = None             # agent: a join token (corral node join-token), in the env file only

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.role == "agent" and not self.reconcilers:
            raise ValueError("an agent's unit needs the reconcilers' buses: --reconciler tcp://HOST:7071, "
                             "once for each")
        if self.join_token is not None and (self.role != "agent" or not re.fullmatch(r"cj1\.[0-9a-f.]+", self.join_token)):
            raise ValueError("--join takes a join token (cj1. and hex, as `corral node join-token` prints it), "
                             "for an agent's unit only")
        if self.role == "router" and not self.reconcilers:
            raise ValueError("a router's unit needs the reconcilers' route feeds: --reconciler tcp://HOST:7073, "
                             "once for each")


def _defaults(o):
    """``o`` with every unset default filled in for its role. Pure."""
    data = o.data_dir or f"{STATE}/{'node' if o.role == 'agent' else 'reconciler'}"
    return dataclasses.replace(
        o, data_dir=data, cache_dir=o.cache_dir or f"{CACHE}/builder", env_file=o.env_file or f"{ENV_DIR}/{o.role}.env",
        listen=o.listen or LISTEN.get(o.role),
        user=o.user or USERS[o.role],
        store=o.store or (f"sqlite:///{data}/corral.db" if o.role == "reconciler" else None))


def command(o):
    """The daemon's argv as the unit's ExecStart runs it. Pure; ValueError names a word systemd would
    read otherwise than a shell does (whitespace, quotes, ``$``, a backslash)."""
    o = _defaults(o)
    settings = ["--settings", o.settings] if o.settings else []
    if o.role == "reconciler":
        argv = [o.exe, "reconciler", "--name", o.name, "--api", o.api, "--bus", o.bus, "--routes", o.routes]
    elif o.role == "router":
        argv = [o.exe, "router", "--listen", o.listen, "--health", o.health]
        for feed in o.reconcilers:
            argv += ["--reconciler", feed]
    elif o.role == "builder":
        argv = [o.exe, "builder", "--name", o.name, "--listen", o.listen, "--cache-dir", o.cache_dir,
                "--images-dir", o.images_dir] + (["--advertise", o.advertise] if o.advertise else [])
    else:
        argv = [o.exe, "agent", "--name", o.name, "--data-dir", o.data_dir, "--images-dir", o.images_dir]
        argv += ["--address", o.address] if o.address else []
        for label in o.labels:
            argv += ["--label", label]
        for bus in o.reconcilers:
            argv += ["--reconciler", bus]
    if o.role != "builder":   # said either way: a unit means what it says whatever a release's default
        argv += ["--bus-encryption", o.bus_encryption]
    argv += settings
    for word in argv:
        if not _PLAIN.match(word):
            raise ValueError(f"{word!r} cannot go on a unit's command line as it is (whitespace, quotes, "
                             f"'$', '%' or a backslash); choose a plain value")
    return argv


def _folders(o):
    """The unit lines that make its folders and let it write them (ProtectSystem=strict leaves it
    nothing else): systemd makes those under /var/lib and /var/cache (``StateDirectory=``,
    ``CacheDirectory=``, owned by the unit's user); any other is named in ``ReadWritePaths=``
    and must exist. Pure."""
    mine = {"builder": [o.cache_dir, o.images_dir], "router": []}.get(o.role, [o.data_dir])
    if o.role == "agent":
        mine.append(o.images_dir)
    if o.role == "builder" and o.user == "root":
        mine.append("/etc")   # useradd: each app's build user (builder/buildusers.py)
    kinds = {"StateDirectory": [], "CacheDirectory": [], "ReadWritePaths": []}
    for path in mine:
        for prefix, kind in (("/var/lib/", "StateDirectory"), ("/var/cache/", "CacheDirectory")):
            if path.startswith(prefix):
                kinds[kind].append(path[len(prefix):])
                break
        else:
            kinds["ReadWritePaths"].append(path)
    lines = [f"{kind}={' '.join(paths)}" for kind, paths in kinds.items() if paths]
    if kinds["CacheDirectory"]:
        lines.append("CacheDirectoryMode=0700")
    if o.role == "reconciler" and kinds["StateDirectory"]:
        lines.append("StateDirectoryMode=0700")
    return lines


def unit(o):
    """The text of ``corral-<role>.service`` for ``o``. Pure."""
    argv = command(o)
    o = _defaults(o)
    what = {"reconciler": "corral reconciler (API, and the control loop while it leads)",
            "builder": "corral builder (build jobs to virtualenv images, served over HTTP)",
            "agent": "corral node agent (runs this server's instances)",
            "router": "corral router (HTTP to the apps' ready instances, by host and path)"}[o.role]
    lines = ["[Unit]", f"Description={what}", "Wants=network-online.target", "After=network-online.target", "",
             "[Service]", "Type=exec", f"User={o.user}"]
    if o.user != "root":
        lines.append(f"Group={o.user}")
    lines.append(f"EnvironmentFile={o.env_file}")
    if o.role == "builder":   # pip and uv find their caches here, not in a home ProtectHome hides
        lines.append(f"Environment=HOME={o.cache_dir} XDG_CACHE_HOME={o.cache_dir}")
    lines += ["ExecStart=" + " ".join(argv),
              "Restart=on-failure", "RestartSec=2s", "TimeoutStopSec=90s"]
    if o.role == "agent":
        lines += ["# A stop or restart ends the agent alone: its instances keep running and the next agent",
                  "# adopts them. `systemctl kill --kill-whom=main --signal=SIGINT corral-agent` stops them too.",
                  "KillMode=process", "KillSignal=SIGTERM", "TasksMax=infinity", "LimitNOFILE=1048576"] + _folders(o)
    else:
        lines += ["KillSignal=SIGTERM", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                  "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                  "ProtectControlGroups=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
                  # a reconciler holds a bus connection per node (it raises its soft limit to this)
                  "LimitNOFILE=1048576"] + _folders(o)
        if o.role == "router":   # ports 80 and 443 as a user: this capability, and no other
            lines += ["AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def env_file(o):
    """The text of the role's environment file: what must stay off its command line. Pure."""
    o = _defaults(o)
    lines = [f"# corral {o.role}: read by systemd (EnvironmentFile= of corral-{o.role}.service) as root;",
             "# keep this file 0600 root:root. Nothing here goes on a command line."]
    if o.join_token:
        lines.append(f"{ENV_JOIN}={o.join_token}")
    elif o.role == "router":
        lines.append(f"{ENV_ROUTER}={ROUTER_CREDENTIAL}")
    elif o.role != "builder":
        lines.append(f"{ENV_SECRET}={SECRET}")
    if o.store:
        lines.append(f"{ENV_STORE}={o.store}")
    return "\n".join(lines) + "\n"


def unit_name(role):
    """The unit's file name for ``role``."""
    return f"corral-{role}.service"
