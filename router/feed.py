"""A router process's view of the reconcilers' route feeds: the thin shell around
router/sources.py. It hears ``routes`` messages, keeps one :class:`Source` per
publisher, asks a publisher for a snapshot after a gap, and hands the chosen
table to the proxy. When no publisher is live it keeps the table it serves and
says so in :meth:`Feed.health`.
"""
import logging
import time

from router import sources

log = logging.getLogger(__name__)

RESYNC_EVERY = 0.5   # at most one snapshot request per publisher per this many seconds


class Feed:
    """Route feeds from ``endpoints`` into ``proxy`` (its ``set_table``); ``timeout``: how long a
    silent publisher stays live (it ticks every second)."""

    def __init__(self, proxy, endpoints, timeout=3.0, clock=time.monotonic):
        self.proxy, self.timeout, self.clock = proxy, timeout, clock
        self.sources = {e: sources.Source() for e in endpoints}
        self.names = {}              # endpoint -> the publisher's name (envelope sender)
        self.serving = None          # the endpoint whose table the proxy serves
        self.served_at = None        # when the proxy's table last came from a live publisher
        self.resync_asked = {}
        self.subscriber = None       # set by the daemon: has .resubscribe(endpoint)

    def on_message(self, endpoint, msg):
        """Take one verified bus message from ``endpoint``."""
        if msg.type != "routes":
            return
        now = self.clock()
        source, resync = sources.receive(self.sources[endpoint], msg.body, now)
        self.sources[endpoint] = source
        self.names[endpoint] = msg.sender
        if resync and now - self.resync_asked.get(endpoint, float("-inf")) >= RESYNC_EVERY:
            self.resync_asked[endpoint] = now
            log.info("route feed %s: out of step, asking for a snapshot", endpoint)
            if self.subscriber is not None:
                self.subscriber.resubscribe(endpoint)
        self.refresh()

    def refresh(self):
        """Serve the table of the live publisher :func:`router.sources.choose` picks, if any."""
        now = self.clock()
        chosen = sources.choose(self.sources, now, self.timeout)
        if chosen is None:
            return
        table = self.sources[chosen].table
        self.served_at = now
        if chosen != self.serving:
            log.info("serving the route table of %s", self.names.get(chosen, chosen))
            self.serving = chosen
        if table is not self.proxy.table:
            self.proxy.set_table(table)

    def health(self):
        """What this router serves and whom it hears: ``stale`` is true (with a ``message``) when
        no publisher is live and the last table is served as it was; ``rejected_messages``
        counts, by reason, what the feeds sent that failed its checks (a forged signature...)."""
        now = self.clock()
        live = {e: sources.is_live(s, now, self.timeout) for e, s in self.sources.items()}
        table = self.proxy.table
        out = {"stale": not any(live.values()), "serving": self.names.get(self.serving),
               "stream": table.stream, "seq": table.seq, "routes": len(table.routes),
               "sources": {e: {"name": self.names.get(e), "live": live[e],
                               "seq": s.table.seq if s.table else None,
                               "heard_ago": None if s.heard_at == float("-inf") else round(now - s.heard_at, 3)}
                           for e, s in self.sources.items()}}
        if self.subscriber is not None:
            out["rejected_messages"] = self.subscriber.stats()["rejected"]
        if out["stale"]:
            since = "never heard from one" if self.served_at is None else \
                f"none heard from for {now - self.served_at:.1f} s"
            out["message"] = (f"no reconciler is live ({since}); serving the last table "
                              f"({len(table.routes)} routes, seq {table.seq})")
        return out
