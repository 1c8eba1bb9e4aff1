"""`corral node list|cordon|uncordon|drain|revoke NAME`, `corral node join-token`: node maintenance.

``cordon`` keeps new instances off a node; ``drain`` cordons it and moves its
instances elsewhere, each app within its own maxUnavailable (a replacement is
ready before the instance it replaces stops), and by default waits until the
node runs nothing; ``uncordon`` makes it schedulable again.

``join-token`` prints a one-time token a new node is started with (``corral agent
--join``) to get a key of its own; ``revoke`` cuts a node off: its key is refused
from then on, and its instances are replaced once it is lost (reconciler/node_keys.py).
"""
import argparse
import time

from corral.cli.client import ClientError
from corral.cli.output import render
from corral.cli.verbs import add_verb, nested


DONE = {"cordon": "cordoned", "uncordon": "uncordoned", "drain": "cordoned and draining",
        "revoke": "revoked: its key is refused from now on"}


def add_parser(sub):
    """Register `corral node` and its nested verbs list, cordon, uncordon and drain on the subparsers ``sub``."""
    p = add_verb(sub, "node", "node maintenance: list nodes, keep new instances off one, or move its instances away",
                 ["corral node list", "corral node drain node-1"])
    actions = nested(p, "action", "ACTION")
    ls = add_verb(actions, "list", "list the nodes (as `corral get nodes` does)", ["corral node list -o wide"])
    ls.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table",
                    help="table (default), wide (with labels), or the API's JSON or YAML")
    c = add_verb(actions, "cordon", "keep new instances off a node (those it runs stay)", ["corral node cordon node-1"])
    c.add_argument("name", help="the node's name")
    un = add_verb(actions, "uncordon", "make a cordoned node schedulable again", ["corral node uncordon node-1"])
    un.add_argument("name", help="the node's name")
    d = add_verb(actions, "drain", "cordon a node and move its instances elsewhere, each app within its "
                                   "maxUnavailable, then wait until the node runs nothing",
                 ["corral node drain node-1 --timeout 300"])
    d.add_argument("name", help="the node's name")
    d.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the node runs no instance (default: yes)")
    d.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="seconds to wait (default 600)")
    j = add_verb(actions, "join-token", "print a one-time token a new node joins with (corral agent --join TOKEN), "
                                        "getting a key of its own", ["corral node join-token --expires 1h"])
    j.add_argument("--expires", default="1h", metavar="DURATION",
                   help="how long the token may be used (default 1h, at most a week: 7d is not taken, say 168h)")
    r = add_verb(actions, "revoke", "cut a node off: its key is refused from now on, its instances are replaced "
                                    "once it is lost", ["corral node revoke node-3"])
    r.add_argument("name", help="the node's name")


def handler_for(args):
    """The function serving `corral node`, else None."""
    return cmd_node if args.command == "node" else None


def cmd_node(args, client, clock=time.monotonic, poll=0.5):
    if args.action == "list":
        print(render("nodes", client.get("/v1/nodes"), args.output))
        return 0
    if args.action == "join-token":
        return join_token(args, client)
    if not getattr(args, "name", None):
        raise ClientError(f"corral node {args.action} needs a node name")
    _, reply = client.request("POST", f"/v1/nodes/{args.name}/{args.action}", idempotent=True)
    print(f"node/{args.name} {DONE[args.action]}")
    if args.action != "drain" or not args.wait:
        return 0
    deadline = clock() + args.timeout
    while True:
        left = [i for i in client.get("/v1/instances") if i["node"] == args.name and i.get("desired")]
        if not left:
            print(f"node/{args.name} drained")
            return 0
        if clock() > deadline:
            raise ClientError(f"timed out after {args.timeout:g}s draining node {args.name}: "
                              f"{len(left)} instance(s) still placed there (see `corral describe app`)")
        time.sleep(poll)


def join_token(args, client):
    """Print a new join token (its text alone on stdout, so that it can be captured), and when it expires
    on stderr."""
    import sys
    from corral.spec.quantities import parse_duration
    try:
        seconds = parse_duration(args.expires)
    except ValueError as e:
        raise ClientError(f"--expires: {e}") from None
    _, reply = client.request("POST", "/v1/node-tokens", json={"expires": seconds})
    print(reply["token"])
    print(f"join token {reply['id']}: use it once (corral agent --join TOKEN), before "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(reply['expires_at']))}", file=sys.stderr)
    return 0
