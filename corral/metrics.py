"""What every daemon's ``/metrics`` shares: a registry of its own, the text exposition, a small server.

Each daemon owns one :class:`prometheus_client.CollectorRegistry` (never the
library's global one), so several daemons in one process (tests, bench/scale.py)
count apart. The reconciler serves its registry on its API port behind a token
(reconciler/api.py); the agent and the builder serve theirs with :func:`serve`
on a metrics address of their own, loopback by default.

Names follow Prometheus' conventions: ``corral_`` prefix, base units (seconds,
bytes), ``_total`` on counters (the library adds it).
"""
import logging

from prometheus_client import CollectorRegistry, disable_created_metrics, exposition

log = logging.getLogger(__name__)

# A ``_created`` series beside every counter doubles what is stored for no question asked of it.
disable_created_metrics()

# Seconds: from a fast probe (1 ms) to a slow build phase (10 min).
SHORT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LONG_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def new_registry():
    """A registry of a daemon's own (no process or platform collectors: those are per process,
    and one process may hold several daemons in tests)."""
    return CollectorRegistry(auto_describe=True)


class ScrapeCollector:
    """A collector that reads ``source`` (a daemon, a store) at each scrape: its subclass says how,
    in ``collect``. Nothing is described ahead: the series exist once there is something to count."""

    def __init__(self, source):
        self.source = source

    def describe(self):
        return []


def exposition_of(registry, accept=None):
    """``(content type, body bytes)`` of ``registry`` in the format ``accept`` asks for (the text
    format 0.0.4 unless OpenMetrics is asked)."""
    encoder, content_type = exposition.choose_encoder(accept or "")
    return content_type, encoder(registry)


def parse_listen(listen):
    """``"HOST:PORT"`` (or ``"[v6]:PORT"``) as ``(host, port)``; ValueError naming the value otherwise."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {listen!r} is not of the form HOST:PORT")
    return host, int(port)


def wsgi_app(registry):
    """A WSGI app that answers ``GET /metrics`` with ``registry`` and 404 elsewhere."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics" or environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            body = b"only GET /metrics is served here\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        content_type, body = exposition_of(registry, environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body] if environ["REQUEST_METHOD"] == "GET" else [b""]

    return app


class MetricsServer:
    """``registry`` served on ``listen`` (``HOST:PORT``; port 0 picks one) by eventlet.wsgi in a green
    thread. :attr:`address` is the bound ``HOST:PORT``. The caller has patched eventlet."""

    def __init__(self, registry, listen):
        import eventlet

        from corral import httpserve
        host, port = parse_listen(listen)
        try:
            self.sock = eventlet.listen((host, port), backlog=64)
        except OSError as e:
            raise OSError(f"the metrics address {listen} cannot be listened on ({e.strerror or e})") from None
        bound = self.sock.getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        self.thread = eventlet.spawn(httpserve.serve, self.sock, wsgi_app(registry))
        log.info("metrics on http://%s/metrics", self.address)

    @classmethod
    def start(cls, registry, listen):
        """A server of ``registry`` on ``listen``, or None (said in the log) when the address is taken or
        wrong: a daemon runs on without its metrics rather than not at all."""
        try:
            return cls(registry, listen)
        except (OSError, ValueError) as e:
            log.error("no /metrics: %s", e)
            return None

    def close(self):
        """Stop serving and release the port."""
        self.thread.kill()
        self.sock.close()
