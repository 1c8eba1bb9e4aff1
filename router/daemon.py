"""`corral router`: the front door, as ``workers`` processes sharing one port.

The parent forks the workers before it opens any socket, and starts one
again when it dies; each worker opens the listening socket itself with
``SO_REUSEPORT`` (the kernel spreads connections over them), subscribes to
every reconciler's route feed on its own, and serves its health (JSON) on
the health address, also shared. SIGTERM/SIGINT: the parent passes it on and
the workers stop accepting and close.

A ``--static FILE`` table (a snapshot body as JSON) replaces the feeds: a
router that serves fixed backends, for benchmarks and for tests of the proxy.
"""
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import signal
import ssl
import time

import corral.green  # noqa: F401  (silences the banner before eventlet loads)
import eventlet
import eventlet.wsgi

from corral.limits import raise_open_files_limit
from corral.routetable import from_snapshot
from router.feed import Feed
from router.proxy import Proxy
from router.tls import server_context

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1   # prctl(2)


def split_address(address, what):
    """``(host, port)`` of ``HOST:PORT``; ValueError naming ``what`` otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def load_static(path):
    """The table in the JSON file at ``path`` (``{"routes": [...]}``, seq optional)."""
    with open(path, encoding="utf-8") as f:
        body = json.load(f)
    return from_snapshot({"stream": "static", "seq": body.get("seq", 1), "routes": body["routes"]})


def health_app(proxy, feed, worker):
    """The WSGI app of the health address: this worker's table, feeds and counters."""
    def app(environ, start_response):
        body = {"ok": True, "worker": worker, "pid": os.getpid(),
                "in_flight": sum(proxy.outstanding.values()), "idle_backend_connections": proxy.pool.idle_count(),
                "resting": sorted(proxy.resting),
                "counters": {k: dict(v) for k, v in proxy.counters.items()}}
        if feed is not None:
            body.update(feed.health())
        else:
            body.update({"stale": False, "serving": "static", "seq": proxy.table.seq,
                         "routes": len(proxy.table.routes)})
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
    return app


def accept_loop(listener, pool, handle):
    """Accept connections on ``listener`` for ever, each served by ``handle(sock, addr)`` in ``pool``."""
    while True:
        try:
            sock, addr = listener.accept()
        except OSError as e:
            log.warning("accept failed: %s", e)
            eventlet.sleep(0.01)
            continue
        pool.spawn_n(handle, sock, addr)


def tls_handler(context, proxy, handshake_timeout):
    """A connection handler that does the TLS handshake (within ``handshake_timeout`` s, in the
    connection's own green thread) and then serves it as ``https``."""
    def handle(sock, addr):
        try:
            sock.settimeout(handshake_timeout)
            tls = context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        proxy.handle(tls, addr, proto="https")
    return handle


def worker_main(index, cfg, credential):
    """One worker process: listen, follow the feeds with ``credential`` (a
    :class:`corral.wire.routercred.RouterCredential`; or serve the static table), serve until a signal."""
    proxy = Proxy(limits=cfg["limits"], timeouts=cfg["timeouts"], trusted=cfg["trusted"])
    listener = eventlet.listen(split_address(cfg["listen"], "--listen"), backlog=4096, reuse_port=True)
    health = eventlet.listen(split_address(cfg["health"], "--health"), backlog=128, reuse_port=True)
    feed = subscriber = None
    if cfg["static"]:
        proxy.set_table(load_static(cfg["static"]))
    else:
        from corral.wire.bus import BusSubscriber
        feed = Feed(proxy, cfg["reconcilers"], timeout=cfg["feed_timeout"])
        encrypted = cfg.get("bus_encryption", "off") == "required"
        subscriber = BusSubscriber(cfg["reconcilers"], credential.feed_key, f"router-{os.getpid()}", feed.on_message,
                                   window=cfg["replay_window"],
                                   curve_server_public=credential.server_public if encrypted else None,
                                   curve_keypair=credential.client_keys())
        feed.subscriber = subscriber
        subscriber.start()

        def refresher():
            while True:
                eventlet.sleep(0.5)
                feed.refresh()
        eventlet.spawn(refresher)
    # What the worker holds by now (modules, functions, classes: some 44,000 objects) stays for
    # its life: out of the cyclic collector's sight, a full collection in the middle of a route
    # churn walks what comes and goes (connections, tables) only. One took 65 ms with 3,000 idle
    # backend connections, a pause every request in flight waits through.
    gc.freeze()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *a: stopping.append(True))
    eventlet.spawn(eventlet.wsgi.server, health, health_app(proxy, feed, index), log_output=False)
    pool = eventlet.GreenPool(cfg["max_connections"])
    acceptors = [eventlet.spawn(accept_loop, listener, pool, proxy.handle)]
    if cfg["tls"]:
        acceptors.append(eventlet.spawn(accept_loop, eventlet.listen(
            split_address(cfg["tls_listen"], "--tls-listen"), backlog=4096, reuse_port=True), pool,
            tls_handler(server_context(cfg["tls"]), proxy, cfg["timeouts"].header)))
    while not stopping:   # a signal handler cannot wake the hub (its epoll resumes): look every 0.2 s
        eventlet.sleep(0.2)
    for acceptor in acceptors:
        acceptor.kill()
    listener.close()
    if subscriber is not None:
        subscriber.close()
    proxy.flush_access_log()
    os._exit(0)


def die_with_parent():
    """Ask the kernel to SIGTERM this worker when the parent dies (``PR_SET_PDEATHSIG``), so
    that a parent killed with SIGKILL leaves no worker holding the port."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("router worker: could not ask to end with its parent")
    if os.getppid() == 1:
        os._exit(0)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def supervise(children, stopping, spawn, grace=10.0):
    """Reap the workers ``children`` (``{pid: index}``): one that dies is started again after a
    second by ``spawn(index)``, unless ``stopping`` (the times a stop was asked): then every
    worker gets SIGTERM (here, not in the signal handler, so that one forked while the signal
    came is not missed), and one still there ``grace`` seconds later SIGKILL. Returns when none
    is left."""
    told, killed = set(), set()
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if stopping:
                late = time.monotonic() - stopping[0] > grace
                for child in set(children) - (killed if late else told):
                    (killed if late else told).add(child)
                    if late:
                        log.warning("router worker %d did not stop within %g s; killing it", children[child], grace)
                    _signal(child, signal.SIGKILL if late else signal.SIGTERM)
            time.sleep(0.05)
            continue
        index = children.pop(pid, None)
        if index is not None and not stopping:
            log.warning("router worker %d exited (status %d); starting it again", index, status)
            time.sleep(1.0)
            spawn(index)


def run(cfg, credential=None):
    """Run ``cfg["workers"]`` worker processes until SIGTERM/SIGINT; a worker that dies is
    started again after a second. ``cfg``: see ``corral router --help``; ``credential``: what the
    feeds are followed with (None for a static table)."""
    raise_open_files_limit()   # the workers inherit it
    children = {}
    stopping = []

    def spawn(index):
        # The parent's handler, inherited, would swallow a stop in the worker: signals wait (blocked)
        # across the fork until the worker has the default ones back (a stop then ends it outright,
        # until it sets its own).
        stops = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
                die_with_parent()
                worker_main(index, cfg, credential)
            except BaseException:
                log.exception("router worker %d failed", index)
            finally:
                os._exit(1)
        children[pid] = index
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)

    def on_signal(signum, frame):
        stopping.append(time.monotonic())   # supervise() passes it on, to every worker forked by then

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(cfg["workers"]):
        spawn(i)
    log.info("router: %d worker(s) on %s, health on %s, feeds %s", cfg["workers"], cfg["listen"], cfg["health"],
             ", ".join(cfg["reconcilers"]) or "(static table)")
    supervise(children, stopping, spawn)
    log.info("router stopped")
