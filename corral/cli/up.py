"""`corral up`: a whole cluster on this machine, each daemon its own OS process.

Two reconcilers (API + bus each), one builder and N node agents, on the
embedded SQLite store in the data dir unless ``--store`` names PostgreSQL.
It makes the cluster key, makes a named API token of each role in the store
(:func:`mint_tokens`) and writes them to the client config (with the API URLs)
so that every other command finds the cluster, optionally applies manifests,
and stays in the foreground, starting again any daemon that exits
(:class:`Keeper`). SIGINT or SIGTERM stops every daemon (agents stop their
instances, each with its grace) and waits for them. Apps applied with
``--apply`` are watched until they serve (:mod:`corral.cli.serving`): where
they answer is printed, or why they do not, and the cluster stays up.

The agents share one images folder with the builder: on one machine that is
the "same path on every node" of DESIGN.md, so an image built here is used
in place.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import requests

from corral.auth import ROLES, metrics_token, new_token, token_hash
from corral.private import tighten_dir, write_private
from corral.cli.client import Client, ClientError, write_config
from corral.wire.keys import ENV_VAR as SECRET_ENV, STORE_ENV_VAR as STORE_ENV, new_key_file, read_key
from corral.wire.routercred import ENV_VAR as ROUTER_CREDENTIAL_ENV, RouterCredential

JOIN_ENV = "CORRAL_JOIN_TOKEN"   # read by the agent (corral agent --join)
from corral.exits import Backoff, exit_message


CLUSTER_DOMAIN = "localhost"   # an app's default host is APP.localhost, which browsers resolve to 127.0.0.1
ROUTER_OFFSET = 1010           # the router listens on the base port + 1010: 8080 for the default 7070


def default_data_dir(environ=os.environ):
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "corral")


def daemon_commands(args, data_dir, secret, store, join_tokens=None):
    """``[(name, argv, env)]`` of every daemon of the cluster: ``env`` holds what it must not be
    given on its command line, which every process of the machine can read: the key's path
    (``CORRAL_SECRET_FILE``, reconcilers and agents; the router gets its credential's,
    ``CORRAL_ROUTER_CREDENTIAL``, and never the key) and the store DSN (``CORRAL_STORE``,
    which may carry a password; reconcilers and builder). ``join_tokens`` (``{node: token or None}``):
    the agents join with their token (``CORRAL_JOIN_TOKEN``), or start with the credential they
    have (None), and hold no cluster key; without it they hold the key. Pure."""
    py = [sys.executable, "-m", "corral"]
    settings = ["--settings", args.settings] if args.settings else []
    images = os.path.join(data_dir, "images")
    keyed = {SECRET_ENV: secret}
    encrypted = ["--bus-encryption", "required"]   # every bus socket CurveZMQ (corral/wire/curve.py)
    stored = {STORE_ENV: store}
    buses, feeds = [], []
    cmds = []
    for i in range(args.reconcilers):
        api = f"127.0.0.1:{args.base_port + 10 * i}"
        bus = f"tcp://127.0.0.1:{args.base_port + 10 * i + 1}"
        feed = f"tcp://127.0.0.1:{args.base_port + 10 * i + 3}"
        buses.append(bus)
        feeds.append(feed)
        cmds.append((f"reconciler-{i + 1}", py + ["reconciler", "--name", f"r{i + 1}", "--api", api, "--bus", bus,
                                                 "--routes", feed, "--cluster-domain", CLUSTER_DOMAIN]
                     + encrypted + settings, {**keyed, **stored}))
    router_port = router_port_of(args)
    cmds.append(("router", py + ["router", "--listen", f"127.0.0.1:{router_port}",
                                 "--health", f"127.0.0.1:{router_port + 1}", "--workers", "1"]
                 + [a for feed in feeds for a in ("--reconciler", feed)] + encrypted + settings,
                 {ROUTER_CREDENTIAL_ENV: router_credential_path(data_dir)}))
    cmds.append(("builder", py + ["builder", "--name", "b1",
                                  "--listen", f"127.0.0.1:{args.base_port + 2}",
                                  "--metrics", f"127.0.0.1:{args.base_port + 4}",
                                  "--cache-dir", os.path.join(data_dir, "builder"), "--images-dir", images]
                 + settings, stored))
    for n, name in enumerate(node_names(args)):
        argv = py + ["agent", "--name", name, "--data-dir", os.path.join(data_dir, "nodes", name),
                     "--images-dir", images, "--label", f"corral.up/node={name}",
                     "--metrics", f"127.0.0.1:{args.base_port + 10 * n + 5}"]
        for bus in buses:
            argv += ["--reconciler", bus]
        if join_tokens is None:
            env = keyed
        else:
            env = {JOIN_ENV: join_tokens[name]} if join_tokens.get(name) else {}
        cmds.append((name, argv + encrypted + settings, env))
    return cmds


def node_names(args):
    """The names of `up`'s agents."""
    return [f"node-{n + 1}" for n in range(args.nodes)]


def join_tokens(names, data_dir, key, store_dsn, ttl=600.0):
    """``{node: join token or None}``: a fresh one-time token (made in the store, as `corral node join-token`
    makes one) for each agent of ``names`` whose folder holds no credential the store knows, None for
    one that will start with its own (corral/wire/credentials.py). A credential whose key the store
    does not know (a store made anew, as with another --store) is removed: its node joins again; a key
    the store holds for a node whose folder does not hold it (a store restored from a backup) is revoked
    first, so that the node can join with its new one."""
    from corral.store import StoreError, open_store
    try:
        return _join_tokens(names, data_dir, key, open_store(store_dsn), ttl)
    except StoreError as e:   # its sentence names the store without a password
        raise ClientError(f"cannot make the agents' join tokens: {e}") from None


def _join_tokens(names, data_dir, key, store, ttl):
    """:func:`join_tokens` on the open ``store``, which it closes."""
    from corral.wire import credentials
    from corral.wire.curve import server_public
    try:
        keys = store.list_node_keys()
        known = {r.public_key for r in keys}
        live = {r.name for r in keys if r.revoked_at is None and r.public_key is not None}
        out = {}
        for name in names:
            folder = os.path.join(data_dir, "nodes", name)
            held = credentials.load_credential(folder)
            if held is not None and held.public.decode("ascii") in known:
                out[name] = None
                continue
            if held is not None:
                os.unlink(credentials.credential_path(folder))
            if name in live:   # the store knows a key of this name its folder does not hold (a store restored
                store.revoke_node_key(name, "corral up")   # from a backup, a folder made anew): up's node, re-keyed
            token = credentials.new_join_token(server_public(key, "required"))
            store.add_join_token(token.id, token.secret_sha256(), ttl, "corral up")
            out[name] = token.text()
        return out
    finally:
        store.close()


class Keeper:
    """Which of `up`'s daemons to start again after it exited, and when. Pure: the caller passes the time.

    A daemon that exits while `up` runs is started again, as a supervisor
    would: 1 s after its first exit, doubling to 30 s while it keeps failing,
    back to 1 s once a run lasted a minute (:class:`nodeagent.restart.Backoff`).
    An agent started again adopts the instances its predecessor left running.
    """

    def __init__(self, names, now, schedule=Backoff(first=1.0, cap=30.0, reset_after=60.0)):
        self.schedule = schedule
        self.started = dict.fromkeys(names, now)
        self.failures = dict.fromkeys(names, 0)
        self.due = {}

    def exited(self, name, now):
        """Note that ``name`` exited at ``now``; return the seconds until it is started again."""
        self.failures[name] = self.schedule.failures_after(self.failures[name], now - self.started[name])
        delay = self.schedule.delay(self.failures[name])
        self.due[name] = now + delay
        return delay

    def waiting(self, name):
        """Whether ``name`` has exited and waits to be started again."""
        return name in self.due

    def to_start(self, now):
        """The names due to start at ``now``, sorted; each counts as started now."""
        names = sorted(n for n, at in self.due.items() if at <= now)
        for name in names:
            del self.due[name]
            self.started[name] = now
        return names


def router_credential_path(data_dir):
    """Where `up` keeps the router's credential (corral/wire/routercred.py), made from the key at each start."""
    return os.path.join(data_dir, "router.credential")


def router_port_of(args):
    """The router's port: ``--router-port``, else the base port + 1010 (8080 for the default 7070)."""
    return getattr(args, "router_port", None) or args.base_port + ROUTER_OFFSET


def listen_ports(base_port, reconcilers, nodes=0, router_port=None):
    """``[(port, what)]``: every TCP port on 127.0.0.1 the cluster's daemons will listen on. Pure.

    Reconciler i (from 0): its API on BASE+10i (which serves its /metrics too), its bus on BASE+10i+1,
    its route feed on BASE+10i+3; the builder's images on BASE+2 and its /metrics on BASE+4; node
    agent n's /metrics on BASE+10n+5; the router on BASE+1010 (or ``router_port``), its health next."""
    ports = []
    for i in range(reconcilers):
        ports += [(base_port + 10 * i, f"the API of reconciler-{i + 1}"),
                  (base_port + 10 * i + 1, f"the bus of reconciler-{i + 1}"),
                  (base_port + 10 * i + 3, f"the route feed of reconciler-{i + 1}")]
    ports += [(base_port + 2, "the builder's image server"), (base_port + 4, "the builder's metrics")]
    ports += [(base_port + 10 * n + 5, f"the metrics of node-{n + 1}") for n in range(nodes)]
    router_port = router_port or base_port + ROUTER_OFFSET
    ports += [(router_port, "the router"), (router_port + 1, "the router's health")]
    return sorted(ports)


def check_ports_free(ports, host="127.0.0.1"):
    """Refuse to start when a port is taken: else a daemon dies on bind while another
    cluster's API answers our health check, and `up` would report someone else's cluster."""
    for port, what in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise ClientError(f"port {port} ({what}) is not free on {host}: {e.strerror}; is another "
                                  f"corral up running? pick other ports with --base-port") from None


def _wait_healthy(urls, procs, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                raise ClientError(f"{name} exited with status {p.returncode} while starting; see its log above")
        try:
            if requests.get(urls[0] + "/healthz", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ClientError(f"the API at {urls[0]} did not answer within {timeout:g}s")


def stop_all(procs, timeout=60.0):
    """SIGINT every daemon still running, wait, then SIGKILL what is left."""
    for _, p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for _, p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def mint_tokens(dsn):
    """``{role: token}``: a new named token of each role (``up-admin``, ``up-deploy``, ``up-read``) for the
    client config, written to the store ``dsn`` before any reconciler starts (each replaces the one of its
    name that an earlier `up` made, whose secret is then refused). So a cluster `up` runs never takes its
    cluster-key tokens, and the config holds no token derived from the bus key."""
    from corral.store import ApiTokenRecord, StoreError, open_store
    try:
        store = open_store(dsn)
        try:
            tokens = {}
            for role in reversed(ROLES):
                tokens[role] = new_token()
                store.add_api_token(ApiTokenRecord(name=f"up-{role}", token_hash=token_hash(tokens[role]), role=role,
                                                   created_at=0.0, created_by=""), actor="corral-up", replace=True)
            return tokens
        finally:
            store.close()
    except StoreError as e:   # its sentence names the store without a password
        raise ClientError(f"cannot make the client config's API tokens: {e}") from None


def up(args):
    """Run the cluster in the foreground; return the exit code."""
    if args.nodes < 1 or args.reconcilers < 1:
        raise ClientError("corral up needs at least one node and one reconciler")
    check_ports_free(listen_ports(args.base_port, args.reconcilers, args.nodes, router_port_of(args)))
    data_dir = os.path.abspath(args.data_dir or default_data_dir())
    # The key and the SQLite store are 0600 in it; others may pass it (an app user reaches its
    # logs and its image below) but not list it, and not even pass it when apps run as us anyway.
    tighten_dir(data_dir, 0o711 if os.geteuid() == 0 else 0o700)
    secret = os.path.join(data_dir, "secret")
    if not os.path.exists(secret):
        new_key_file(secret)
    store = args.store or f"sqlite:///{os.path.join(data_dir, 'corral.db')}"
    from corral.cli.upservices import prepare
    args.settings, services_said = prepare(args.settings, data_dir)
    urls = [f"http://127.0.0.1:{args.base_port + 10 * i}" for i in range(args.reconcilers)]
    key = read_key(secret)
    tokens = mint_tokens(store)
    config = write_config(urls, tokens["admin"], tokens=tokens, builders=[f"http://127.0.0.1:{args.base_port + 2}"])
    write_private(os.path.join(data_dir, "metrics-token"), metrics_token(key).encode("ascii"))   # docs/monitoring.md
    write_private(router_credential_path(data_dir), RouterCredential.of_cluster(key).text())

    stopping = []
    signal.signal(signal.SIGTERM, lambda s, f: stopping.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stopping.append(s))
    procs = {}   # daemon name -> its process
    joins = join_tokens(node_names(args), data_dir, key, store)   # each agent its own key, not the cluster's
    daemons = {name: (argv, {**os.environ, **env})
               for name, argv, env in daemon_commands(args, data_dir, secret, store, joins)}
    try:
        for name, (argv, env) in daemons.items():
            # Own process groups: a Ctrl-C reaches `up` alone, which stops the daemons in order.
            procs[name] = subprocess.Popen(argv, env=env, start_new_session=True)
        _wait_healthy(urls, procs.items())
        print(f"corral is up: API {', '.join(urls)}; store {store}; data {data_dir}", flush=True)
        print(f"client config written to {config}; try `corral get nodes`", flush=True)
        print(f"dashboard: {urls[0]}/ui/ (log in with a token of the config's tokens: read, deploy or admin)",
              flush=True)
        print(f"router: http://127.0.0.1:{router_port_of(args)}/ serves each app at APP.{CLUSTER_DOMAIN} "
              f"(curl -H 'Host: hello.{CLUSTER_DOMAIN}' http://127.0.0.1:{router_port_of(args)}/)", flush=True)
        print(services_said, flush=True)
        if os.geteuid() != 0:
            print("corral up: apps run as you here, sharing your files and each other's (no isolation); "
                  "as root, each app runs as its own user", file=sys.stderr, flush=True)
        watch = None
        if args.apply:
            from corral.cli.commands import apply_files
            from corral.cli.serving import Watch
            client = Client(urls, tokens["admin"])
            watch = Watch(client, apply_files(client, args.apply)["results"])
        keeper = Keeper(daemons, time.monotonic())
        next_look = time.monotonic()
        while not stopping:
            now = time.monotonic()
            if watch and not watch.done and now >= next_look:
                watch.look()
                next_look = now + 1.0
            for name, p in procs.items():
                if p.poll() is not None and not keeper.waiting(name):
                    delay = keeper.exited(name, now)
                    print(f"corral up: {name} {exit_message(p.returncode)}; starting it again in {delay:g}s",
                          file=sys.stderr, flush=True)
            for name in keeper.to_start(now):
                argv, env = daemons[name]
                procs[name] = subprocess.Popen(argv, env=env, start_new_session=True)
                print(f"corral up: {name} started again (pid {procs[name].pid})", file=sys.stderr, flush=True)
            time.sleep(0.25)
    finally:
        print("corral up: stopping", file=sys.stderr, flush=True)
        stop_all(procs.items())
    return 0
