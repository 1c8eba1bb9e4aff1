"""A hostile peer on the route feed: a publisher at the router's feed endpoint that signs with
another key, with the cluster key itself rather than the feed key derived from it (a router
checks the feed with that one alone: corral/wire/routercred.py), or not at all, cannot put a
route in the router's table; the router counts nothing from it as live, and serves its own 404
for the host the forger claims."""
import corral.green

corral.green.patch()

import contextlib  # noqa: E402

import eventlet  # noqa: E402
import requests  # noqa: E402
from eventlet.green import zmq  # noqa: E402

from corral.wire.bus import BusPublisher  # noqa: E402
from tests.routerkit import backend, credential_env, route, running_router  # noqa: E402
from tests.support import free_port  # noqa: E402

KEY, FORGED = bytes(range(32)), bytes(range(1, 33))


def test_a_forged_or_unsigned_feed_routes_nothing(tmp_path):
    env = credential_env(tmp_path, KEY)
    forged_at, raw_at = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    snapshot = {"kind": "snapshot", "stream": "evil", "seq": 1, "leader": True, "routes": []}
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(backend("attacker"))
        snapshot["routes"] = [route("bank.test", [port], app="bank")]
        forger = BusPublisher(forged_at, FORGED, "r1", lambda: None).start()
        stack.callback(forger.close)
        cluster_keyed_at = f"tcp://127.0.0.1:{free_port()}"
        cluster_keyed = BusPublisher(cluster_keyed_at, KEY, "r2", lambda: None).start()
        stack.callback(cluster_keyed.close)
        ctx = zmq.Context()
        unsigned = ctx.socket(zmq.XPUB)
        unsigned.bind(raw_at)
        stack.callback(lambda: (unsigned.close(0), ctx.term()))
        router = stack.enter_context(running_router(tmp_path, feeds=[forged_at, cluster_keyed_at, raw_at], env=env, workers=1,
                                                    args=["--feed-timeout", "1"]))
        for _ in range(20):   # keep sending while the router connects and subscribes
            forger.publish("routes", snapshot)
            cluster_keyed.publish("routes", snapshot)
            unsigned.send(b"0" * 64 + b"." + b'{"type": "routes"}')
            eventlet.sleep(0.1)
        r = requests.get(router.url("/"), headers={"Host": "bank.test"}, timeout=5)
        assert r.status_code == 404 and "no app is served at bank.test" in r.text
        health = router.health()
        assert health["routes"] == 0 and health["stale"] is True
        assert not any(s["live"] for s in health["sources"].values())
        assert health["rejected_messages"].get("signature", 0) > 0   # the forger was heard, and refused
