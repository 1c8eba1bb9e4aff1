"""A node that is not what it says: messages a peer holding one node's credential sends as another.

:func:`report` and :func:`alive` are the bodies an agent sends (tests/adversarial/test_node_keys.py
sends them from its own process). Run as a program, this is that peer on a node's own host (cluster
scenario 12 runs it in node n1's network namespace, with n1's credential)::

    python -m tests.impostor DATA_DIR AS_NAME ADDRESS SECONDS BUS [BUS...]

With the node credential kept in ``DATA_DIR`` (corral/wire/credentials.py) it connects to every
reconciler's bus and, for ``SECONDS``, sends as ``AS_NAME`` a report (with ``ADDRESS`` and a capacity
no real node has, 64 cpus and a TiB, so that one taken would show), a heartbeat and a log chunk, and
under its own name a report whose body names ``AS_NAME``. It prints one line of JSON: ``sent`` (how
many of each) and ``heard`` (``[type, the node its body names]`` of each message it received).
"""
import json
import sys

from corral import nodereport

CAPACITY = {"cpu": 64, "memory": 1 << 40, "disk": 1 << 40}


def report(name, address="10.6.6.6", seq=1):
    """A full report of node ``name`` (no instances) with :data:`CAPACITY`."""
    return {"node": {"name": name, "address": address, "labels": {}, "conditions": [], "capacity": dict(CAPACITY)},
            "epoch_seen": 0, "alive": True, "started_at": 1.0, "seq": seq, "instances": []}


def alive(body):
    """The heartbeat that follows the report ``body``."""
    return {"started_at": body["started_at"], "seq": body["seq"] + 1, "epoch_seen": 0,
            "digest": nodereport.digest(body)}


def main(argv):
    import corral.green
    corral.green.patch()
    import eventlet
    from corral.wire.bus import BusClient
    from corral.wire.credentials import load_credential

    data_dir, as_name, address, seconds, buses = argv[0], argv[1], argv[2], float(argv[3]), argv[4:]
    cred = load_credential(data_dir)
    heard = []

    def keep(endpoint, msg):
        heard.append([msg.type, (msg.body.get("node") or {}).get("name") if isinstance(msg.body.get("node"), dict)
                      else msg.body.get("node")])

    def client(sender):
        return BusClient(buses, cred.sign_key, sender, keep, curve_server_public=cred.server_public,
                         curve_keypair=(cred.public, cred.secret)).start()
    as_other, as_itself = client(as_name), client(cred.name)
    sent = {"report": 0, "alive": 0, "logs_chunk": 0, "report naming another": 0}
    deadline = eventlet.hubs.get_hub().clock() + seconds
    seq = 1
    try:
        while eventlet.hubs.get_hub().clock() < deadline:
            body = report(as_name, address, seq)
            sent["report"] += as_other.send_all("report", body)
            sent["alive"] += as_other.send_all("alive", alive(body))
            for endpoint in buses:
                sent["logs_chunk"] += as_other.send_to(endpoint, "logs_chunk", {"stream": "s1", "seq": seq},
                                                       attachment=b"forged line\n")
            sent["report naming another"] += as_itself.send_all("report", report(as_name, address, seq))
            seq += 2
            eventlet.sleep(0.2)
    finally:
        as_other.close()
        as_itself.close()
    print(json.dumps({"sent": sent, "heard": heard}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
