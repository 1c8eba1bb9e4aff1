"""A real `corral router` following real route feeds (reconciler/route_feed.py on a BusPublisher,
green in this process): snapshot on connect, deltas, a lost delta mended by a snapshot, the
leader's table preferred, a restarted publisher, and the last table served when every
feed is gone (and the health says so)."""
import corral.green

corral.green.patch()

import contextlib  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402

from corral.routetable import route_from_json  # noqa: E402
from corral.wire.bus import BusPublisher  # noqa: E402
from reconciler.route_feed import RouteFeed  # noqa: E402
from corral.wire.routercred import feed_key  # noqa: E402
from tests.routerkit import backend, credential_env, route, running_router  # noqa: E402
from tests.support import free_port  # noqa: E402

KEY = bytes(range(32))


def wait_green(what, predicate, timeout=10.0):
    """Poll ``predicate`` with green sleeps (the feed runs in this process) until truthy."""
    deadline = eventlet.hubs.get_hub().clock() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if eventlet.hubs.get_hub().clock() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        eventlet.sleep(0.05)


class Feed:
    """A publisher of a table this test sets (``self.table``: a list of route JSON)."""

    def __init__(self, endpoint, leader=False, key=KEY):
        self.table, self.leader = [], leader
        self.feed = RouteFeed(self._publish, self._compute, lambda: 7 if self.leader else None, interval=0.3)
        self.pub = BusPublisher(endpoint, feed_key(key), "r-test", self.feed.on_subscribe).start()
        self.drop = False
        self.feed.start()

    def _publish(self, type, body):
        if not self.drop:
            self.pub.publish(type, body)

    def _compute(self):
        return {(r["host"], r["path"]): route_from_json(r) for r in self.table}

    def set(self, table):
        self.table = table
        self.feed.kick()

    def close(self):
        self.feed.stop()
        self.pub.close()


@pytest.fixture
def env(tmp_path):
    return credential_env(tmp_path, KEY)


def answer(router, host):
    try:
        r = requests.get(router.url("/"), headers={"Host": host}, timeout=5)
    except requests.RequestException as e:
        return repr(e)
    return r.text if r.status_code == 200 else r.status_code


def test_the_router_follows_a_feed_and_keeps_its_last_table_when_the_feed_is_gone(tmp_path, env):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with contextlib.ExitStack() as stack:
        a, b = stack.enter_context(backend("a")), stack.enter_context(backend("b"))
        feed = Feed(endpoint)
        stack.callback(lambda: feed.close())
        feed.set([route("shop.test", [a], app="shop")])
        router = stack.enter_context(running_router(tmp_path, feeds=[endpoint], env=env, workers=1,
                                                      args=["--feed-timeout", "1"]))
        wait_green("the snapshot", lambda: answer(router, "shop.test") == "hello from a")
        assert router.health()["stale"] is False

        feed.set([route("shop.test", [b], app="shop"), route("docs.test", [a], app="docs")])   # a delta
        wait_green("the delta", lambda: answer(router, "shop.test") == "hello from b"
                   and answer(router, "docs.test") == "hello from a")

        feed.drop = True                                                 # a delta lost on the way
        feed.set([route("shop.test", [a], app="shop")])
        eventlet.sleep(0.2)
        feed.drop = False
        wait_green("the snapshot after the gap", lambda: answer(router, "docs.test") == 404
                   and answer(router, "shop.test") == "hello from a")

        feed.close()                                                     # every reconciler gone
        health = wait_green("a stale health", lambda: (lambda h: h if h["stale"] else None)(router.health()))
        assert "serving the last table (1 routes" in health["message"]
        assert answer(router, "shop.test") == "hello from a"

        feed = Feed(endpoint)                                            # restarted: a new stream
        feed.set([route("shop.test", [b], app="shop")])
        wait_green("the new stream", lambda: answer(router, "shop.test") == "hello from b")
        assert router.health()["stale"] is False


def test_the_leaders_table_is_served_when_two_feeds_differ(tmp_path, env):
    one, two = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    with contextlib.ExitStack() as stack:
        a, b = stack.enter_context(backend("a")), stack.enter_context(backend("b"))
        follower, leader = Feed(one), Feed(two, leader=True)
        stack.callback(follower.close)
        stack.callback(leader.close)
        follower.set([route("shop.test", [a], app="shop")])
        leader.set([route("shop.test", [b], app="shop")])
        router = stack.enter_context(running_router(tmp_path, feeds=[one, two], env=env, workers=1,
                                                      args=["--feed-timeout", "1"]))
        wait_green("the leader's table", lambda: answer(router, "shop.test") == "hello from b")
        leader.close()                                                   # the leader dies: the other one's
        wait_green("the follower's table", lambda: answer(router, "shop.test") == "hello from a", timeout=15)
