"""One reconciler process: API server, bus server, lease keeper and control loop.

Every reconciler serves the API and hears every agent; only the one holding
the leader lease syncs. :class:`Reconciler` holds one method per duty, each
run as a green thread by :meth:`Reconciler.start`:

- :meth:`~Reconciler.on_report` (the bus's thread): each verified ``report``
  updates the observed view; a change enqueues the apps it concerns (a new
  node: everything);
- :meth:`~Reconciler.lease_loop`: take/renew every ``lease_renew`` seconds;
  becoming leader enqueues everything;
- :meth:`~Reconciler.control_loop`: one worker takes the due keys of the work
  queue (app names, ``ALL`` every ``loop_interval``) and syncs them with
  :meth:`~Reconciler.sync_keys`, if (and only while) we lead; a failed app is
  retried after its own backoff. After a sync it pauses as long as the sync
  took (at most ``loop_interval``), so syncs take no more than half the time
  and the bus keeps up with the reports. One worker, on purpose: placements of
  different apps compete for the same nodes' room, and a single writer of the
  desired table needs no optimistic retry (Nomad's plan applier serialises
  them too);
- :meth:`~Reconciler.gitops_loop`: every ``gitops_tick`` the GitSources that
  are due go into a work queue of their own (a key per source, with its own
  backoff), which a second worker drains with :meth:`~Reconciler.sync_source`,
  if we lead: a git fetch takes seconds and must not hold the apps' syncs;
- :meth:`~Reconciler.events_loop`: writes the instance events the reports
  produced, off the bus's thread;
- :meth:`~Reconciler.prune_loop`: as leader, deletes the events past their
  retention (``event_retention``, ``event_max``: Kubernetes keeps an hour);
- :meth:`~Reconciler.schedule_loop`: as leader, wakes at the next slot of any
  schedule and enqueues the apps it belongs to (their runs: reconciler/cron.py);
- the route feed (reconciler/route_feed.py), leader or not: the routers' table
  derived from the store and this reconciler's observed view, published on its
  own XPUB endpoint; every changed report and every sync kicks it;
- :meth:`~Reconciler.services_loop`: every ``loop_interval``, as leader, app
  services are provisioned, rotated, kept or dropped (reconciler/appservices.py);
  an app whose service env changed is enqueued, so its instances roll;
- the API: eventlet.wsgi on the API address (corral/httpserve.py: a deadline on request heads, a cap per client).

A new duty (a router's table, schedules, add-on services) is a method here,
started in :meth:`~Reconciler.start`, stopping when :attr:`Reconciler.stop` says so.
"""
import collections
import logging
import shutil
import tempfile
import time

import corral.green  # noqa: F401  (silences the banner before eventlet loads)
import eventlet
import eventlet.queue

from corral import apitls, httpserve
from corral.auth import api_token, metrics_token, role_tokens
from corral.limits import raise_open_files_limit
from corral.settings import ServiceServers, Timings
from corral.stopping import Stop
from corral.store import Fenced, StoreError, open_store
from corral.wire.bus import BusPublisher, BusServer
from corral.wire.curve import server_public, server_secret
from corral.wire.keys import hide_process, key_path, read_key, store_dsn as store_dsn_from
from corral.wire.routercred import feed_key, router_key_only
from reconciler.api import Api
from reconciler.appservices import ServiceKeeper
from reconciler.cluster_state import ClusterState
from reconciler.cron import next_wake
from reconciler.gitops.repo import GitRepos
from reconciler.gitops.sync import GitSync
from reconciler.instance_events import instance_events
from reconciler.leader import LeaderLease, process_holder
from reconciler.loop import ALL, Controller
from reconciler.metrics import ReconcilerMetrics
from reconciler.node_keys import NodeKeys
from reconciler.observed import Observed, is_delayed
from reconciler.route_feed import RouteFeed, Touch
from reconciler.session_relay import Relay
from reconciler.workqueue import WorkQueue

log = logging.getLogger(__name__)

PENDING_EVENTS = 1000   # instance events kept for the store while it is down (leader only)
SLOT_MARGIN = 0.005     # seconds past a slot before its sync: a timer that fires early finds it due


def open_store_retrying(dsn, stop_after=60.0):
    """Open the store, retrying while it is unreachable (a daemon may start first)."""
    deadline = time.monotonic() + stop_after
    while True:
        try:
            return open_store(dsn)
        except StoreError as e:
            if time.monotonic() > deadline:
                raise
            log.warning("store not ready (%s); retrying", e)
            eventlet.sleep(1.0)


class Reconciler:
    """One reconciler's duties over its store and bus (see the module's docstring).

    Constructing it binds the bus endpoint ``bus``; nothing runs until :meth:`start`.
    ``git_dir`` is a scratch folder of its own for GitOps clones.
    """

    def __init__(self, *, name, store, key, bus, timings=Timings(), git_dir, stop=None, clock=time.time,
                 routes=None, cluster_domain="localhost", services=ServiceServers(), bus_encryption="off"):
        self.name, self.store, self.timings, self.clock = name, store, timings, clock
        self.stop = stop if stop is not None else Stop()
        self.observed = Observed(started_at=clock())
        self.work = WorkQueue()      # app names, and ALL for a full resync
        self.sources = WorkQueue()   # GitSource names
        self.pending_events = collections.deque(maxlen=PENDING_EVENTS)
        self._kicks = eventlet.queue.LightQueue(maxsize=1)
        curve_secret = server_secret(key, bus_encryption)   # None: cleartext (``off``)
        # each node its own key (reconciler/node_keys.py): only on an encrypted bus, where a key can be checked
        self.node_keys = None if curve_secret is None else \
            NodeKeys(store, key, server_public(key, bus_encryption), refresh=timings.heartbeat)
        self.bus = BusServer(bus, key, name, self.on_message, window=timings.replay_window, curve_secret=curve_secret,
                             identities=self.node_keys)
        self.relay = Relay(self.bus.send, lambda node: clock() - self.observed.last_seen(node),
                           timings.heartbeat_timeout)
        self.lease = LeaderLease(store, process_holder(name), timings)
        self.metrics = ReconcilerMetrics()
        self.services = ServiceKeeper(store, services, timings, f"reconciler/{name}")
        self.controller = Controller(store, self.observed, self.bus, timings, name, metrics=self.metrics,
                                     services=self.services)
        self.state = ClusterState(name, store, self.observed, self.lease, timings, bus_stats=self.bus.stats,
                                  credential=self.node_keys.status if self.node_keys else None)
        self.gitsync = GitSync(store, GitRepos(git_dir, timings.git_timeout), name, self.kick, scratch_dir=git_dir,
                               cluster_domain=cluster_domain)
        self.touch = Touch(timings.heartbeat_timeout)   # routes are published only while we hear the agents
        self.route_feed = RouteFeed(lambda type, body: self.publisher.publish(type, body),
                                    lambda: self.state.routes(cluster_domain), lambda: self.lease.epoch,
                                    in_touch=lambda: self.touch.ok(time.monotonic()))
        self.publisher = None if routes is None else \
            BusPublisher(routes, feed_key(key), name, self.route_feed.on_subscribe, window=timings.replay_window,
                         curve_secret=curve_secret, admits=None if curve_secret is None else router_key_only(key))
        self.api = Api(store, self.state, api_token(key), self.kick, self.relay, tokens=role_tokens(key),
                       watch=(timings.watch_interval, timings.watch_keepalive), metrics=self.metrics,
                       metrics_token=metrics_token(key), route_table=self.route_feed.table_json,
                       cluster_domain=cluster_domain, services=self.services, node_keys=self.node_keys)
        self.metrics.watch(self)
        self._threads = []

    # -- events in ---------------------------------------------------------
    def kick(self, *keys):
        """Enqueue ``keys`` (app names; none: everything) and wake the worker."""
        self.work.add_all(keys or (ALL,))
        try:
            self._kicks.put_nowait(True)
        except eventlet.queue.Full:
            pass

    def on_message(self, peer, msg):
        """The bus's handler: stream messages go to the relay, reports to :meth:`on_report`, and
        heartbeats between them to :meth:`on_alive`."""
        self.metrics.messages.labels(msg.type).inc()
        if msg.type == "report" and msg.body["node"]["name"] != msg.sender:
            self.bus.refuse("impersonation", msg.body["node"]["name"], f"a report signed by node {msg.sender}")
            return
        if msg.type in self.relay.types:
            self.relay.on_message(peer, msg)
        elif msg.type == "report":
            self.on_report(msg.body)
            if msg.body.get("alive"):
                self.ack(peer, msg.body["node"]["name"])
        elif msg.type == "alive":
            self.on_alive(peer, msg.body)

    def on_alive(self, peer, body):
        """A node's heartbeat between full reports: it refreshes the report kept for the node when
        that is the one it names; else the node is told what this reconciler keeps, so that its
        next heartbeat is the full report (:mod:`nodeagent.reporting`)."""
        node = peer.decode("utf-8")
        self.touch.heard(time.monotonic())
        if not self.observed.refresh(node, body, self.clock()):
            self.ack(peer, node)

    def ack(self, peer, node):
        """Tell node ``peer`` which of its reports this reconciler keeps (``ack``)."""
        kept = self.observed.latest(node)
        self.bus.send(peer, "ack", {"started_at": kept.started_at if kept else None,
                                    "digest": kept.digest if kept else None}, self.lease.epoch or 0)

    def on_report(self, body):
        """Record a node's report; a change enqueues the apps it concerns (a new node: every app).
        As leader, the instance transitions it shows become events (written by :meth:`events_loop`)."""
        node = body["node"]["name"]
        self.touch.heard(time.monotonic())
        prev = self.observed.latest(node)
        if prev is not None and self.lease.epoch is not None and not is_delayed(prev, body):
            self.pending_events.extend(("app", app, reason, message, self.name)
                                       for app, reason, message in instance_events(node, prev.instances,
                                                                                   body["instances"]))
        if self.observed.record(body, self.clock()):
            self.route_feed.kick()
            if prev is None:
                self.kick()
            else:
                self.kick(*({i["app"] for i in body["instances"]} | self.controller.apps_on_node(node)))

    # -- duties --------------------------------------------------------------
    def lease_loop(self):
        """Take or renew the lease every ``lease_renew`` s; becoming leader enqueues everything."""
        while not self.stop():
            was = self.lease.epoch
            if self.lease.tick() is not None and was is None:
                self.kick()
            self.stop.sleep(self.timings.lease_renew)

    def control_loop(self):
        """The one worker of the apps' work queue (see the module's docstring)."""
        timings, next_resync = self.timings, 0.0
        while not self.stop():
            now = time.monotonic()
            leading = self.lease.epoch is not None   # else woken by a kick (lease_loop kicks on leading) or the timer
            wait = self.work.wait_hint(now, max(0.0, min(timings.loop_interval, next_resync - now)), leading)
            try:
                self._kicks.get(timeout=wait)
            except eventlet.queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_resync:
                self.work.add(ALL)
                next_resync = now + timings.loop_interval
            epoch = self.lease.epoch
            if epoch is None or self.stop():
                continue
            keys = self.work.take(now)
            if keys:
                self.sync_keys(epoch, keys)
                # Leave the other green threads as long as the sync took (at most a loop
                # interval: a sync slowed by a store outage must not delay the next): back to
                # back, the syncs of a busy cluster let the bus read one report per sync,
                # until 1,000 nodes seemed unreachable (bench/scale.py).
                eventlet.sleep(min(time.monotonic() - now, timings.loop_interval))
            eventlet.sleep(0)

    def sync_keys(self, epoch, keys):
        """Sync the apps ``keys`` as leader at ``epoch``; each key is retried after its backoff when
        its sync failed, and forgotten when it succeeded. Fenced: we no longer lead, let the lease go."""
        failed = set(keys)
        began = time.monotonic()
        try:
            result = self.controller.sync(epoch, keys)
            self.metrics.sync_seconds.observe(time.monotonic() - began)
            failed = set(keys) if result.deferred else result.failed
            self.route_feed.kick()   # the desired table may have lost instances: they leave the routes now
        except Fenced:
            log.warning("%s was fenced at epoch %d: another reconciler leads", self.name, epoch)
            self.lease.release()
        except StoreError as e:
            log.warning("sync of %s failed: %s", ", ".join(sorted(keys)), e)
        except Exception:
            log.exception("sync of %s failed", ", ".join(sorted(keys)))
        self._settle(self.work, keys, failed)

    def schedule_loop(self):
        """As leader: sleep until the next slot of any schedule (:func:`reconciler.cron.next_wake`)
        and then sync the apps it belongs to, so a run starts at its slot, not at the next resync."""
        while not self.stop():
            wait = self.timings.loop_interval
            if self.lease.epoch is not None:
                try:
                    when, names = next_wake(self.store.list_apps(), self.clock())
                except StoreError as e:
                    log.warning("could not read the schedules: %s", e)
                    when, names = None, ()
                if when is not None and when - self.clock() <= wait:
                    self.stop.sleep(max(0.0, when - self.clock()) + SLOT_MARGIN)
                    self.kick(*names)
                    continue
            self.stop.sleep(wait)

    def _every_as_leader(self, interval, work):
        """Every ``interval`` s until stopped, while we lead: ``work(epoch)``."""
        while not self.stop.sleep(interval):
            epoch = self.lease.epoch
            if epoch is not None:
                work(epoch)

    def gitops_loop(self):
        """Every ``gitops_tick``, as leader: :meth:`gitops_pass`."""
        self._every_as_leader(self.timings.gitops_tick, self.gitops_pass)

    def gitops_pass(self, epoch):
        """Enqueue the GitSources that are due and sync those the queue hands out (a source whose
        sync failed waits for its backoff); returns the names synced to their end."""
        try:
            self.sources.add_all(n for n in self.gitsync.due() if not self.sources.backing_off(n))
        except StoreError as e:
            log.warning("could not list the GitSources due: %s", e)
        names = self.sources.take(time.monotonic())
        synced = [name for name in names if not self.stop() and self.sync_source(epoch, name)]
        self._settle(self.sources, names, set(names) - set(synced))
        return synced

    def sync_source(self, epoch, name):
        """One GitSource's sync as leader at ``epoch``; returns whether it ran to its end (a failed
        fetch or a refused commit did: its status says so; a store error or a fence did not)."""
        began = time.monotonic()
        try:
            self.gitsync.sync_named(name, epoch)
            self.metrics.gitops_seconds.labels(name).observe(time.monotonic() - began)
            return True
        except Fenced:
            log.warning("%s was fenced at epoch %d during a git sync", self.name, epoch)
        except StoreError as e:
            log.warning("git sync of %s failed: %s", name, e)
        except Exception:
            log.exception("git sync of %s failed", name)
        return False

    def services_loop(self):
        """Every ``loop_interval``, as leader: :meth:`services_pass`."""
        self._every_as_leader(self.timings.loop_interval, self.services_pass)

    def services_pass(self, epoch):
        """One pass of app services as leader at ``epoch``; the apps whose service env changed are enqueued."""
        def observed_ids(app):
            return {o.id for o in self.observed.instances() if o.app == app}
        try:
            changed = self.services.sync(epoch, self.store.list_desired, observed_ids)
        except Fenced:
            log.warning("%s was fenced at epoch %d during a services pass", self.name, epoch)
            return
        except StoreError as e:
            log.warning("services pass failed: %s", e)
            return
        except Exception:
            log.exception("services pass failed")
            return
        if changed:
            self.kick(*sorted(changed))

    def events_loop(self):
        """Write the instance events the reports produced, off the bus's green thread; a store
        that is down keeps them (at most ``PENDING_EVENTS``) for the next try."""
        while not self.stop.sleep(self.timings.loop_interval):
            self.write_events()

    def prune_loop(self):
        """Every ``prune_interval``, as leader: :meth:`prune`."""
        while not self.stop.sleep(self.timings.prune_interval):
            if self.lease.epoch is not None:
                self.prune()

    def prune(self):
        """Delete the events past ``event_retention`` or beyond the newest ``event_max``; returns
        how many went (None when the store could not be reached: the next turn tries again)."""
        try:
            return self.store.prune_events(self.timings.event_retention, int(self.timings.event_max))
        except StoreError as e:
            log.warning("old events not deleted yet: %s", e)
            return None

    def write_events(self):
        """One attempt to write the pending instance events; returns how many were written."""
        batch = list(self.pending_events)
        if not batch:
            return 0
        try:
            self.store.add_events(batch)
        except StoreError as e:
            log.warning("%d instance event(s) not written yet: %s", len(batch), e)
            return 0
        for _ in batch:
            self.pending_events.popleft()
        return len(batch)

    @staticmethod
    def _settle(queue, keys, failed):
        """Mark ``keys`` done in ``queue``: the ``failed`` ones retry after their backoff."""
        now = time.monotonic()
        for key in keys:
            queue.done(key)
            if key in failed:
                queue.retry(key, now)
            else:
                queue.forget(key)

    # -- life ------------------------------------------------------------------
    def start(self, api_sock):
        """Start the bus and every duty, and serve the API on the listening socket ``api_sock``."""
        duties = [self.lease_loop, self.control_loop, self.gitops_loop, self.events_loop, self.prune_loop,
                  self.schedule_loop, self.services_loop]
        self.api.credentials.warm()   # before the first request, so that none waits for the bootstrap question
        if self.node_keys is not None:
            try:
                self.node_keys.refresh()   # before the first handshake, so a joined node is known at once
            except StoreError as e:
                log.warning("could not read the node keys yet: %s", e)
            duties.append(lambda: self.node_keys.run(self.stop))
        self.bus.start()
        if self.publisher is not None:
            self.publisher.start()
            duties.append(self.route_feed.run)
        self._threads = [eventlet.spawn(duty) for duty in duties]
        self._threads.append(eventlet.spawn(httpserve.serve, api_sock, self.api,
                                            log=logging.getLogger("corral.api.access")))

    def close(self):
        """Give up the lease (a successor need not wait for it to expire), stop every duty, close the bus."""
        self.stop.set()
        self.lease.release()
        for t in self._threads:
            t.kill()
        self.bus.close()
        if self.publisher is not None:
            self.publisher.close()


def run(*, store_dsn=None, api, bus, secret_file=None, name, timings=Timings(), routes=None,
        cluster_domain="localhost", services=ServiceServers(), bus_encryption="off", tls=None, stop=None):
    """Run one reconciler until SIGINT/SIGTERM. ``api`` is ``HOST:PORT``, ``bus`` a zmq endpoint;
    ``tls`` ``(certificate file, key file)`` serves the API over HTTPS (:mod:`corral.apitls`); ``stop``: the
    signals caught before this was called (the caller's early handlers), honoured once it is up.

    The key's path and the store DSN come from the environment when not given
    (:func:`corral.wire.keys.key_path`, :func:`corral.wire.keys.store_dsn`): never from argv."""
    hide_process()
    raise_open_files_limit()
    key = read_key(key_path(secret_file))
    store = open_store_retrying(store_dsn_from(store_dsn))
    git_dir = tempfile.mkdtemp(prefix="corral-git-")
    stop = Stop(early=stop)
    host, _, port = api.rpartition(":")
    context = apitls.server_context(*tls) if tls else None   # a file that cannot be loaded: said before anything
    sock = eventlet.listen((host or "127.0.0.1", int(port)), backlog=1024)
    if context is not None:
        sock = context.wrap_socket(sock, server_side=True)
    elif apitls.beyond_loopback(host):
        log.warning("the API on %s is plain HTTP beyond loopback: tokens and secrets travel in the clear "
                    "(give the reconciler --tls-cert and --tls-key)", api)
    reconciler = Reconciler(name=name, store=store, key=key, bus=bus, timings=timings, git_dir=git_dir, stop=stop,
                            routes=routes, cluster_domain=cluster_domain, services=services,
                            bus_encryption=bus_encryption)
    try:
        with stop.catching():
            reconciler.start(sock)
            log.info("reconciler %s: api %s://%s, bus %s, route feed %s", name, "https" if tls else "http", api, bus,
                     routes or "(none)")
            stop.wait()
    finally:
        reconciler.close()
        sock.close()
        store.close()
        shutil.rmtree(git_dir, ignore_errors=True)
    log.info("reconciler %s stopped", name)
