"""`corral rollout status|history|undo APP`: follow, list and reverse rolling updates.

``status`` waits, as ``kubectl rollout status`` does, until the app's current
revision is Complete (exit 0) or its rollout failed (exit 1, with the reason:
a missed progressDeadline, a failed build, an instance that fits nowhere);
``--no-wait`` prints the state once. ``history`` lists the kept revisions
(the last 10). ``undo`` goes back to the previous revision, or to
``--to-revision N``.
"""
import argparse
import time

from corral.cli.client import ClientError
from corral.cli.output import render, table
from corral.cli.verbs import add_verb, nested


def add_parser(sub):
    """Register `corral rollout` and its nested verbs status, history and undo on the subparsers ``sub``."""
    p = add_verb(sub, "rollout", "follow, list and reverse an app's rolling updates",
                 ["corral rollout status hello", "corral rollout history hello", "corral rollout undo hello"])
    actions = nested(p, "action", "ACTION")
    s = add_verb(actions, "status", "wait until the app's current revision is rolled out (exit 0) "
                                    "or its rollout failed (exit 1, with the reason)",
                 ["corral rollout status hello --timeout 120"])
    s.add_argument("app", help="the app's name")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the rollout completes or fails; --no-wait prints the state once (default: wait)")
    s.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="seconds to wait (default 600)")
    h = add_verb(actions, "history", "list the app's kept revisions (the last 10), the current one marked *",
                 ["corral rollout history hello"])
    h.add_argument("app", help="the app's name")
    h.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table",
                   help="table (default), or the API's list as JSON or YAML")
    u = add_verb(actions, "undo", "go back to the app's previous revision, or to the one --to-revision names",
                 ["corral rollout undo hello", "corral rollout undo hello --to-revision 2"])
    u.add_argument("app", help="the app's name")
    u.add_argument("--to-revision", type=int, default=None, metavar="N",
                   help="go back to revision N (default: the one before the current)")


def handler_for(args):
    """The function serving `corral rollout`, else None."""
    return cmd_rollout if args.command == "rollout" else None


def cmd_rollout(args, client):
    return {"status": _status, "history": _history, "undo": _undo}[args.action](args, client)


def rollout_state(app):
    """``(done, failed, sentence)`` of an app as `get apps -o json` shows it."""
    conds = {c["type"]: c for c in app.get("conditions", [])}
    prog = conds.get("Progressing", {})
    current = app.get("observedGeneration", 0) >= app.get("generation", 0)
    counts = (f"{app.get('updated', 0)} updated, {app.get('available', 0)} available, "
              f"{app.get('desired', 0)} desired")
    if not current:
        return False, False, f"app/{app['name']}: waiting for the reconciler to see generation {app.get('generation')}"
    if prog.get("status") == "False":
        return True, True, f"app/{app['name']} revision {app.get('revision')}: {prog.get('reason')}: {prog.get('message')}"
    if prog.get("reason") == "Complete":
        return True, False, f"app/{app['name']} revision {app.get('revision')} rolled out ({counts})"
    return False, False, f"app/{app['name']} revision {app.get('revision')} rolling: {counts}"


def _status(args, client, clock=time.monotonic, poll=0.5):
    deadline = clock() + args.timeout
    said = None
    while True:
        app = client.get(f"/v1/apps/{args.app}")
        done, failed, sentence = rollout_state(app)
        if sentence != said:
            print(sentence, flush=True)
            said = sentence
        if done:
            return 1 if failed else 0
        if not args.wait:
            return 0
        if clock() > deadline:
            raise ClientError(f"timed out after {args.timeout:g}s waiting for the rollout of app {args.app}")
        time.sleep(poll)


def _history(args, client):
    revisions = client.get(f"/v1/apps/{args.app}/revisions")
    if args.output != "table":
        print(render("revisions", revisions, args.output))
        return 0
    if not revisions:
        print(f"app/{args.app} has no recorded revision yet")
        return 0
    rows = [[str(r["revision"]) + (" *" if r["current"] else ""), (r["image"] or "-")[:19], str(r["generation"]),
             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"]))] for r in revisions]
    print(table(rows, ["REVISION", "IMAGE", "GENERATION", "CREATED"]))
    return 0


def _undo(args, client):
    body = {"toRevision": args.to_revision}
    _, reply = client.request("POST", f"/v1/apps/{args.app}/undo", json=body)
    print(f"app/{args.app} rolled back to revision {reply['toRevision']} (generation {reply['generation']})")
    return 0
