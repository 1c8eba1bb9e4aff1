"""`corral get gitsources`, `corral describe gitsource NAME`, `corral sync NAME`.

``sync`` asks the leader to sync now and, unless ``--no-wait``, waits for that
sync to be done and says how it went (exit 1 when the commit was refused).
"""
import time

from corral.cli.client import ClientError
from corral.cli.output import age, render, table

KINDS = ("gitsource", "gitsources")


def _short(commit):
    return commit[:12] if commit else "-"


def _rows(items):
    return [[s["name"], s["url"], s["branch"], _short(s.get("fetchedCommit")), _short(s.get("syncedCommit")),
             f"{s.get('synced', 0)}/{len(s.get('apps', []))}", age(s.get("lastAttempt")),
             "error" if s.get("lastError") else "ok"] for s in items]


HEADERS = ["NAME", "URL", "BRANCH", "FETCHED", "SYNCED", "APPS-SYNCED", "LAST-SYNC", "STATUS"]


def handler_for(args):
    """The function serving these arguments when they are about GitSources, else None."""
    if args.command == "sync":
        return cmd_sync
    if args.command == "get" and args.resource in KINDS:
        return cmd_get
    if args.command == "describe" and args.kind in KINDS:
        return cmd_describe
    return None


def cmd_get(args, client):
    """Print every source (or one) as a table, JSON or YAML."""
    data = client.get(f"/v1/gitsources/{args.name}") if args.name else client.get("/v1/gitsources")
    if args.output in ("json", "yaml"):
        print(render("gitsources", data, args.output))
        return 0
    items = data if isinstance(data, list) else [data]
    print(table(_rows(items), HEADERS) if items else "No gitsources found.")
    return 0


def describe_text(s):
    """The ``describe gitsource`` text of one source as the API returns it."""
    spec = s["spec"]
    lines = [f"Name:          {s['name']}",
             f"URL:           {s['url']}",
             f"Branch:        {s['branch']}",
             f"Path:          {s['path']}",
             f"Interval:      {spec['interval']}",
             f"Prune:         {'yes' if spec['prune'] else 'no'}   SelfHeal: {'yes' if spec['selfHeal'] else 'no'}"
             f"   AllowEmpty: {'yes' if spec['allowEmpty'] else 'no'}",
             f"Fetched:       {s.get('fetchedCommit') or '-'}",
             f"Synced:        {s.get('syncedCommit') or '-'}  at {s.get('lastSynced') or '-'}",
             f"Last attempt:  {s.get('lastAttempt') or '-'}",
             f"Last error:    {s.get('lastError') or '-'}" + (f"  (at {s['lastErrorAt']})" if s.get("lastError") else "")]
    if s.get("webhook"):
        lines.append(f"Webhook:       POST {s['webhook']['path']}  with header X-Corral-Token: {s['webhook']['token']}")
    lines.append("Apps:")
    for a in s.get("apps", []):
        lines.append(f"  {a['name']:<24} {a['state']}")
        lines.extend(f"      {d}" for d in a.get("diff", []))
    if not s.get("apps"):
        lines.append("  none")
    return "\n".join(lines)


def cmd_describe(args, client):
    """Print one source: spec, commits, last error, webhook, per-app sync state, events."""
    s = client.get(f"/v1/gitsources/{args.name}")
    events = client.get("/v1/events", params={"kind": "gitsource", "name": args.name, "limit": 20})
    print(describe_text(s))
    print("Events:")
    print("  " + (render("events", events, "table").replace("\n", "\n  ") if events else "none"))
    return 0


def cmd_sync(args, client, poll=0.25, clock=time.monotonic):
    """Ask for a sync of NAME now; wait for it (unless --no-wait) and report its outcome."""
    _, reply = client.request("POST", f"/v1/gitsources/{args.name}/sync", idempotent=True)
    print(f"gitsource/{args.name} sync requested")
    if not args.wait:
        return 0
    deadline = clock() + args.timeout
    while clock() < deadline:
        s = client.get(f"/v1/gitsources/{args.name}")
        if (s.get("handledRequestAt") or 0) >= reply["requestedAt"]:
            if s.get("lastError"):
                raise ClientError(f"gitsource {args.name}: sync of {_short(s.get('fetchedCommit'))} failed: "
                                  f"{s['lastError']}")
            print(f"gitsource/{args.name} synced at commit {_short(s.get('syncedCommit'))}")
            return 0
        time.sleep(poll)
    raise ClientError(f"timed out after {args.timeout:g}s waiting for gitsource {args.name} to sync "
                      f"(is a reconciler leading?)")
