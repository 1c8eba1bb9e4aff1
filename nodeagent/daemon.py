"""The agent daemon: connect to every reconciler, run the agent until a signal.

- SIGINT: stop every instance of the node (drain, SIGTERM, grace, SIGKILL), report, exit.
  ``corral up`` stops its agents this way, and Ctrl-C in a terminal means it.
- SIGTERM: exit and leave every instance running, with the instance table on
  disk; the next agent on this data dir adopts them (as after SIGKILL). This is
  what a service manager sends on restart or upgrade of the agent.

Secrets, at start: the agent makes itself non-dumpable (no process of its uid
reads its memory or environ), takes from its data dir, ``logs/`` and ``home/``
every permission but passing for group and others, and reads its own credential
(``credential/node.json``, made by a join: :mod:`corral.wire.credentials`) or else
the cluster key from ``$CORRAL_SECRET_FILE`` (and drops the variable, so no
instance inherits it; ``$CORRAL_JOIN_TOKEN`` likewise).

Isolation is decided once, at start: who apps run as (:func:`nodeagent.users.choose`),
whether each instance gets a mount namespace hiding the agent's folders and the key
(:func:`instance_namespaces`) and whether memory requests are hard limits (:meth:`MemoryCgroups.probe`).
What cannot be enforced is logged with its reason and reported as a condition.

With ``CORRAL_AGENT_PROFILE=PATH`` in its environment the daemon runs under
cProfile and writes the profile (pstats format) to PATH when SIGINT or SIGTERM
comes (before it stops anything, so the profile is of its running); SIGUSR1
starts the profile afresh, so that it covers only what follows (bench/agent_idle.py
``--profile`` sends it when the measured window starts).
"""
import cProfile
import logging
import os
import signal

import eventlet

from corral.metrics import MetricsServer
from corral.settings import Timings
from corral.stopping import Stop
from corral.wire.bus import BusClient
from corral.wire import credentials
from corral.wire.curve import server_public
from corral.wire.join import join
from corral import private
from corral.wire.keys import hide_process, key_path, read_key
from nodeagent import sandbox, users
from nodeagent.agent import Agent
from nodeagent.cgroupfs import MemoryCgroups
from nodeagent.metrics import AgentMetrics
from nodeagent.process import Capture, Launcher, Sandbox
from nodeagent.restart import Backoff
from nodeagent.sessions import Streams

log = logging.getLogger(__name__)

# The data dir, its logs/ and home/: others may pass (an app user reaches its own log folder and
# HOME inside) but not list them; every file of the agent's own in them is 0600 (nodeagent.state).
DATA_DIR_MODE = 0o711
DEFAULT_METRICS = "127.0.0.1:7075"


def instance_namespaces(who, data_dir, images_dir, secret):
    """``(Sandbox or None, why not)`` for the :class:`Launcher`: with app users, every instance
    lives in a mount namespace that hides the data and images folders and the key's file
    (:mod:`nodeagent.sandbox`), where the kernel allows one; else none, and the reason is
    logged once and said in the node's ``Isolation`` condition."""
    if not who.separate:
        return None, "apps share the agent's user"
    refused = sandbox.refusal()
    if refused is not None:
        log.warning("instances get no mount namespace of their own (%s): file modes alone keep the agent's "
                    "folders and the key from apps, and /tmp is shared", refused)
        return None, refused
    return Sandbox(hide=[data_dir, images_dir], mask=[secret]), None


def bus_credentials(name, reconcilers, data_dir, secret_file, join_token, bus_encryption):
    """``(signing key, CurveZMQ server public key or None, own key pair or None, path of the secret's
    file)`` the agent speaks with: the node's own credential on ``data_dir``, else the one a
    ``join_token`` is exchanged for now (kept there for every later start), else the cluster key.
    ValueError with one sentence when the credential is another node's or the join is refused."""
    credential = credentials.load_credential(data_dir)
    if credential is None and join_token:
        credential = join(reconcilers, join_token, name)
        path = credentials.save_credential(data_dir, credential)
        log.info("node %s joined the cluster: its own key is in %s", name, path)
    elif credential is not None and join_token:
        log.info("node %s has its own key already (%s); the join token given was not used", name,
                 credentials.credential_path(data_dir))
    if credential is None:
        secret = key_path(secret_file)
        key = read_key(secret)
        return key, server_public(key, bus_encryption), None, secret
    if credential.name != name:
        raise ValueError(f"the credential in {credentials.credential_path(data_dir)} is node {credential.name}'s, "
                         f"not {name}'s: give --name {credential.name}, or another --data-dir")
    return credential.sign_key, credential.server_public, (credential.public, credential.secret), \
        credentials.credential_path(data_dir)


def run(*, name, reconcilers, data_dir, secret_file=None, images_dir, labels, address="127.0.0.1", timings=Timings(),
        app_users=None, stop=None, metrics=DEFAULT_METRICS, bus_encryption="off", join_token=None):
    """Run the agent of node ``name`` until SIGINT (stop its instances, then return) or SIGTERM
    (return and leave them running for the next agent to adopt).

    ``app_users``: None runs each app as its own system user when the agent is
    root; False (``--no-app-users``) runs apps as the agent's user. ``stop``:
    the signals caught before this was called (the caller's early handlers);
    the first of them is honoured once the agent is up, after it adopted its
    instances.

    ``metrics``: the ``HOST:PORT`` its ``/metrics`` is served on (:mod:`nodeagent.metrics`),
    loopback by default: what it tells of the node is for the node's own scraper.

    ``secret_file``: the cluster key's path, for compatibility only; None (``corral up``, a
    service unit) takes it from ``$CORRAL_SECRET_FILE`` (:func:`corral.wire.keys.key_path`),
    so that it is on no command line. A node with a key of its own (``join_token`` once, then its
    credential on ``data_dir``: :func:`bus_credentials`) needs no cluster key.

    The caller has called ``corral.green.patch()`` before importing this module.
    """
    hide_process()
    for folder in (data_dir, os.path.join(data_dir, "logs"), os.path.join(data_dir, "home")):
        try:
            private.tighten_dir(folder, DATA_DIR_MODE)
        except PermissionError as e:  # not the folder's owner: say so, and go on as before
            log.warning("could not take group and others' permissions from %s (%s)", folder, e.strerror)
    key, curve_server, keypair, secret = bus_credentials(name, reconcilers, data_dir, secret_file, join_token,
                                                         bus_encryption)
    os.makedirs(images_dir, exist_ok=True)
    who = users.choose(app_users, data_dir, images_dir, os.environ.get("HOME"))
    if who.reason:  # a warning where root was meant to isolate apps and cannot; else the chosen setup
        (log.warning if os.geteuid() == 0 and app_users is not False else log.info)("%s", who.reason)
    launcher = Launcher(*instance_namespaces(who, data_dir, images_dir, secret))
    if not launcher.become_subreaper():
        log.warning("could not become the reaper of orphaned processes; an instance's orphans may linger as zombies")
    bus = None
    counted = AgentMetrics()
    agent = Agent(name=name, data_dir=data_dir, images_dir=images_dir, labels=labels, address=address,
                  heartbeat=timings.heartbeat, endpoints=list(reconcilers),
                  send=lambda endpoint, t, body, epoch: bus.send_to(endpoint, t, body, epoch),
                  launcher=launcher, backoff=Backoff.from_timings(timings), capture=Capture.from_timings(timings),
                  bus_stats=lambda: bus.stats(), users=who, memory=MemoryCgroups.probe(),
                  log_retention=timings.log_retention, metrics=counted)
    counted.watch(agent)
    bus = BusClient(list(reconcilers), key, name, agent.on_message, window=timings.replay_window,
                    curve_server_public=curve_server, curve_keypair=keypair)
    agent.streams = Streams(agent, reply=bus.send_to)
    stop = Stop(early=stop)
    profile = _Profile.from_env()
    server = MetricsServer.start(counted.registry, metrics)
    try:
        with stop.catching():
            bus.start()
            agent.start()
            log.info("agent %s up, reporting to %s", name, ", ".join(reconcilers))
            stop.wait()
            if profile is not None:
                profile.dump()
                profile = None
            if stop.first == signal.SIGINT:
                log.info("agent %s stopping its instances and exiting on SIGINT", name)
                agent.shutdown()
            else:
                log.info("agent %s exiting on %s and leaving %d instances running for the next agent",
                         name, signal.Signals(stop.first).name, len(agent.instances))
                agent.detach()
    finally:
        if server is not None:
            server.close()
        bus.close()
        if profile is not None:
            profile.dump()

class _Profile:
    """cProfile of the whole daemon while ``CORRAL_AGENT_PROFILE`` names a file; SIGUSR1 restarts it."""

    def __init__(self, path):
        self.path = path
        self.profiler = cProfile.Profile()
        self.profiler.enable()
        signal.signal(signal.SIGUSR1, self.restart)

    @classmethod
    def from_env(cls):
        """A running profile when the environment asks for one, else None."""
        path = os.environ.get("CORRAL_AGENT_PROFILE")
        return cls(path) if path else None

    def restart(self, signum=None, frame=None):
        """Drop what was profiled so far and go on profiling."""
        self.profiler.disable()
        self.profiler = cProfile.Profile()
        self.profiler.enable()

    def dump(self):
        """Stop profiling and write the profile to the file."""
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        self.profiler.disable()
        self.profiler.dump_stats(self.path)
        log.info("profile of the agent written to %s", self.path)
