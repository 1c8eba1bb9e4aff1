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


DONE = {"cordon": "cordoned", "uncordon": "uncordoned", "drain": "cordoned and draining"}


def add_parser(sub):
    """Register `corral node` on the argparse subparsers ``sub``."""
    p = sub.add_parser("node", help="node maintenance: list, cordon, uncordon, drain")
    p.add_argument("action", choices=["list", "cordon", "uncordon", "drain"])
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="drain: wait until the node runs no instance (default: yes)")
    p.add_argument("--timeout", type=float, default=600.0, help="drain: seconds to wait (default 600)")


def handler_for(args):
    """The function serving `corral node`, else None."""
    return cmd_node if args.command == "node" else None


def cmd_node(args, client, clock=time.monotonic, poll=0.5):
    if args.action == "list":
        print(render("nodes", client.get("/v1/nodes"), args.output))
        return 0
    if not args.name:
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
