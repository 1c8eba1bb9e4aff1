"""`corral node list|cordon|uncordon|drain NAME`: node maintenance.

``cordon`` keeps new instances off a node; ``drain`` cordons it and moves its
instances elsewhere, each app within its own maxUnavailable (a replacement is
ready before the instance it replaces stops), and by default waits until the
node runs nothing; ``uncordon`` makes it schedulable again.
"""
import argparse
import time

from corral.cli.client import ClientError
from corral.cli.output import render
from corral.cli.verbs import add_verb, nested


DONE = {"cordon": "cordoned", "uncordon": "uncordoned", "drain": "cordoned and draining"}


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


def handler_for(args):
    """The function serving `corral node`, else None."""
    return cmd_node if args.command == "node" else None


def cmd_node(args, client, clock=time.monotonic, poll=0.5):
    if args.action == "list":
        print(render("nodes", client.get("/v1/nodes"), args.output))
        return 0
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
