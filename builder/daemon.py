"""The builder daemon: a build worker and the image server, in one process.

Four green threads: the worker (builder.worker), the HTTP server
(builder.web, eventlet.wsgi; it checks each layer request's credential with
the layer keys it reads from the store) and the announcer, which writes to
the store every ANNOUNCE_EVERY seconds that this builder serves layers at its
advertised address (the leader offers every live builder's address to the
nodes, so one builder down does not stop a fetch); and the copier
(builder.replicas), which copies the layers of desired images that other
builders made, so that this one has them too. SIGTERM or SIGINT stops both: the worker
abandons its current build cleanly (another builder may claim it once it is
stale), the server stops accepting, and run() returns.

The caller calls ``corral.green.patch()`` before importing this module.
"""
import logging
import os
import sys

import eventlet
import eventlet.tpool

from builder import buildusers
from builder.engines import find_uv
from builder.metrics import BuilderMetrics
from builder.pipconfig import read_pip_config
from builder.pipeline import Workshop
from builder.replicas import Replicas
from builder.web import make_app
from builder.worker import Worker
from corral import httpserve, private
from corral.layer_keyring import LayerKeyRing
from corral.metrics import MetricsServer, parse_listen
from corral.stopping import Stop
from corral.settings import Timings
from corral.store import StoreError, open_store
from corral.wire.keys import hide_process, store_dsn as store_dsn_from

log = logging.getLogger("corral.builder")

DEFAULT_STALE_AFTER = 60.0     # a build unheard of this long is claimable by another builder
DEFAULT_PIP_TIMEOUT = 1800.0   # seconds one pip install may take
CACHE_FOLDERS = ("artifacts", "logs", "replicas", "resolutions", "work", "uv", "wheels")   # the builder's alone
ANNOUNCE_EVERY = 10.0          # a builder says where it serves this often (reconciler.loop.BUILDER_SILENT: 60 s)


def run(*, store_dsn=None, listen, cache_dir, images_dir, name, advertise=None, timings=Timings(),
        stale_after=DEFAULT_STALE_AFTER, pip_timeout=DEFAULT_PIP_TIMEOUT, engine="auto", layer_cache_bytes=None,
        wheel_cache_bytes=None, metrics="127.0.0.1:7073", stop=None):
    """Serve images on ``listen`` and work the store's build queue until SIGTERM/SIGINT.

    ``advertise`` (``HOST:PORT``) is the address written into artifact URLs
    when ``listen`` is not what others reach (e.g. ``0.0.0.0:7072``); by
    default the bound address. ``engine`` is the install engine ("uv",
    "pip", or "auto": uv when found). The layer and wheel caches are pruned
    to ``layer_cache_bytes`` and ``wheel_cache_bytes`` (None: the settings'
    ``builder_layer_cache``/``builder_wheel_cache``; 0: no limit). The operator's
    pip index settings are read once, here. Must be called from the main thread.

    ``metrics``: the ``HOST:PORT`` its ``/metrics`` is served on (:mod:`builder.metrics`), loopback
    by default.

    ``store_dsn`` None takes it from ``$CORRAL_STORE`` (:func:`corral.wire.keys.store_dsn`), which
    no build inherits (a build's environment is made afresh); the builder is non-dumpable and its
    cache dir is its own alone (0700, or 0711 with its folders 0700 when builds run as build users
    of their own: :mod:`builder.buildusers`).
    """
    host, port = parse_listen(listen)
    hide_process()
    store_dsn = store_dsn_from(store_dsn)
    os.makedirs(images_dir, exist_ok=True)
    users = _build_users(cache_dir, images_dir, engine)
    stopping = Stop(early=stop)   # the signals its caller caught while it started, honoured once it is up
    with stopping.catching():
        store = open_store(store_dsn)
        heartbeat_store = open_store(store_dsn, migrate=False)
        metrics_store = open_store(store_dsn, migrate=False)
        counted = BuilderMetrics(metrics_store)
        sock = eventlet.listen((host, port), backlog=1024)
        metrics_server = MetricsServer.start(counted.registry, metrics)
        try:
            bound = sock.getsockname()
            address = advertise or (f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}")
            keys = LayerKeyRing(heartbeat_store)
            app = make_app(images_dir=images_dir, cache_dir=cache_dir, keys=keys, metrics=counted)
            server = eventlet.spawn(httpserve.serve, sock, app)
            announcing = eventlet.spawn(announce, heartbeat_store, name, f"http://{address}", stopping)
            copying = eventlet.spawn(Replicas(heartbeat_store, keys, name=name, images_dir=images_dir,
                                              cache_dir=cache_dir, own_url=f"http://{address}").run, stopping,
                                     timings.layer_copy_interval)
            workshop = Workshop(name=name, images_dir=images_dir, cache_dir=cache_dir, pip_timeout=pip_timeout,
                                engine=engine, index=read_pip_config(), users=users,
                                layer_cache_bytes=int(_or(layer_cache_bytes, timings.builder_layer_cache)),
                                wheel_cache_bytes=int(_or(wheel_cache_bytes, timings.builder_wheel_cache)))
            worker = Worker(store, workshop, layers_base=f"http://{address}", stale_after=stale_after,
                            heartbeat_store=heartbeat_store, offload=eventlet.tpool.execute, metrics=counted)
            working = eventlet.spawn(worker.run, stopping, timings.build_poll)
            log.info("builder %s serving images on http://%s", name, address)
            while not stopping() and not working.dead:
                eventlet.sleep(0.2)   # (the worker may end on its own: a store gone for good)
            working.wait()
            announcing.kill()
            copying.kill()
            server.kill()
            log.info("builder %s stopped", name)
        finally:
            if metrics_server is not None:
                metrics_server.close()
            sock.close()
            store.close()
            heartbeat_store.close()
            metrics_store.close()


def _build_users(cache_dir, images_dir, engine):
    """Who builds run as (:func:`builder.buildusers.choose`), said once; the cache dir made the
    builder's own (0700), or passable (0711) to reach each build user's folder, its other
    folders (archives, logs, resolutions, work) then 0700 each."""
    private.tighten_dir(cache_dir, private.DIR_MODE)
    uv = find_uv() if engine in ("uv", "auto") else None
    users = buildusers.choose(cache_dir, images_dir, tools=[uv] if uv else [sys.executable])
    if users.separate:
        for name in CACHE_FOLDERS:
            private.tighten_dir(os.path.join(cache_dir, name), private.DIR_MODE)
        os.chmod(cache_dir, 0o711)   # passed, never listed
        log.info("builds run as a system user of their app's own (corral_build-...), no_new_privs, "
                 "in a fresh environment")
    else:   # said as a warning only where isolation was possible (root): an ordinary user's builder has none
        (log.warning if os.geteuid() == 0 else log.info)(
            "%s: a build can read and change what the builder can (its other builds' caches and layers)", users.reason)
    return users


def announce(store, name, url, stopping, every=ANNOUNCE_EVERY):
    """Say in the store that builder ``name`` serves layers at ``url``, every ``every`` s until ``stopping()``."""
    while not stopping():
        try:
            store.builder_seen(name, url)
        except StoreError as exc:
            log.warning("builder %s could not say where it serves: %s", name, exc)
        eventlet.sleep(every)


def _or(given, default):
    """``given`` unless it is None."""
    return default if given is None else given
