"""`corral backups create|list|restore` and `corral services rotate`, and the services and backups of
`corral get` and `corral describe service APP/NAME`.

A backup is taken, and verified by a restore into a scratch copy, by the
reconciler that answers, within the request: these verbs wait up to
``--timeout`` (default 600 s) for it.
"""
import time

from corral.cli.client import ClientError
from corral.cli.output import render
from corral.cli.verbs import add_verb, nested


def add_parser(sub):
    """Register `corral backups` and `corral services` on the subparsers ``sub``."""
    p = add_verb(sub, "backups", "take, list and restore backups of an app's databases, each proven by a restore",
                 ["corral backups create hello", "corral backups list hello",
                  "corral backups restore hello hello-db-20261203T081500Z --force"])
    actions = nested(p, "action", "ACTION")
    c = add_verb(actions, "create", "back up the app's services (or one), then verify each backup by restoring "
                                    "it into a scratch copy and comparing what it holds",
                 ["corral backups create hello", "corral backups create hello db"])
    c.add_argument("app", help="the app's name")
    c.add_argument("service", nargs="?", help="only this service (default: every service of the app)")
    c.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="seconds to wait for the backup and its verification (default 600)")
    ls = add_verb(actions, "list", "list the app's backups, oldest first, with whether each was verified and why",
                  ["corral backups list hello", "corral backups list hello -o json"])
    ls.add_argument("app", help="the app's name")
    ls.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table",
                    help="table (default), wide (more columns), or the API's list as JSON or YAML")
    r = add_verb(actions, "restore", "replace a service's live data with a backup (checked against its manifest); "
                                     "needs --force, and takes a backup of the live data first",
                 ["corral backups restore hello hello-db-20261203T081500Z --force"])
    r.add_argument("app", help="the app's name")
    r.add_argument("backup", help="the backup's id (see `corral backups list APP`)")
    r.add_argument("--force", action="store_true",
                   help="do replace the live data (a verified backup of it is taken first)")
    r.add_argument("--to-new", metavar="NAME", default=None,
                   help="restore into a new PostgreSQL service NAME of the app instead (kept until spec.services "
                        "names it); the live data is not touched")
    r.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="seconds to wait for the safety backup and the restore (default 600)")

    s = add_verb(sub, "services", "manage an app's services: rotate their credentials",
                 ["corral services rotate hello/db"])
    verbs = nested(s, "action", "ACTION")
    rot = add_verb(verbs, "rotate", "make a new password for a service: the app's instances roll onto it, "
                                    "then the old login is dropped",
                   ["corral services rotate hello/db"])
    rot.add_argument("service", metavar="APP/NAME", help="the service, as app/name")


def handler_for(args):
    """The function serving `corral backups` / `services`, `get services|backups` and `describe service`,
    else None."""
    if args.command == "backups":
        return {"create": _create, "list": _list, "restore": _restore}[args.action]
    if args.command == "services":
        return _rotate
    if args.command == "get" and args.resource in ("services", "service", "backups", "backup"):
        return _get
    if args.command == "describe" and args.kind in ("service", "services"):
        return _describe
    return None


def split_service(text):
    """``(app, name)`` of ``APP/NAME``; ClientError naming the form otherwise. Pure."""
    app, sep, name = (text or "").partition("/")
    if not sep or not app or not name or "/" in name:
        raise ClientError(f"name a service as APP/NAME (e.g. hello/db), not {text!r}")
    return app, name


def verified_text(b):
    """``yes`` or ``no (reason)``: what VERIFIED shows. Pure."""
    return "yes" if b["verified"] else f"no ({b['reason']})"


def _create(args, client):
    client.timeout = args.timeout
    body = {"service": args.service} if args.service else {}
    _, made = client.request("POST", f"/v1/apps/{args.app}/backups", json=body)
    failed = 0
    for b in made:
        print(f"backup/{b['id']} {b['size']} bytes in {b['seconds'].get('backup', 0):.2f} s; "
              f"verified {verified_text(b)}")
        failed += not b["verified"]
    return 1 if failed else 0


def _list(args, client):
    print(render("backups", client.get("/v1/backups", params={"app": args.app}), args.output))
    return 0


def _restore(args, client):
    client.timeout = args.timeout
    started = time.monotonic()
    body = {"toNew": args.to_new} if args.to_new else {"force": args.force}
    _, out = client.request("POST", f"/v1/apps/{args.app}/backups/{args.backup}/restore", json=body)
    if args.to_new:
        print(f"{args.app}/{out['service']} made and restored from {out['restored']} in "
              f"{time.monotonic() - started:.1f} s; name it in spec.services to give it to the app")
        return 0
    print(f"{args.app}/{out['service']} restored from {out['restored']} in {time.monotonic() - started:.1f} s; "
          f"the data it replaced is in backup/{out['safetyBackup']}")
    return 0


def _rotate(args, client):
    app, name = split_service(args.service)
    client.request("POST", f"/v1/services/{app}/{name}/rotate")
    print(f"service/{app}/{name} rotating: a new login is made, the instances roll onto it, then the old one goes")
    return 0


def _get(args, client):
    """`get services|backups [APP|APP/NAME]`; with ``-w``, the list again each second it changed."""
    resource = "services" if args.resource.startswith("service") else "backups"
    params = {"app": args.name.partition("/")[0]} if args.name else {}
    last = None
    while True:
        items = client.get(f"/v1/{resource}", params=params)
        if args.name and "/" in args.name and resource == "services":
            items = [i for i in items if f"{i['app']}/{i['name']}" == args.name]
        text = render(resource, items, args.output)
        if text != last:
            print(text, flush=True)
            last = text
        if not getattr(args, "watch", False):
            return 0
        time.sleep(1.0)


def _describe(args, client):
    app, name = split_service(args.name)
    s = client.get(f"/v1/services/{app}/{name}")
    last = s.get("lastBackup")
    lines = [f"Service:      {app}/{name}",
             f"Type:         {s['type']}",
             f"Server:       {s['server']}",
             f"State:        {s['state']}" + (f" ({s['message']})" if s.get("message") else ""),
             f"On delete:    {s['onDelete']}",
             f"Credential:   generation {s['generation']}" + (" (rotating)" if s.get("rotating") else ""),
             f"Size:         {s['size'] if s.get('size') is not None else '-'} bytes",
             f"Env:          {', '.join(s['env'])} (secrets)",
             f"Last backup:  {last['id'] + ', verified ' + verified_text(last) if last else 'none'}",
             "Backups:"]
    lines.append("  " + (render("backups", s["backups"], "table").replace("\n", "\n  ") if s["backups"] else "none"))
    lines.append("Events:")
    lines += [f"  {e['reason']:<20} {e['message']}" for e in s["events"]] or ["  none"]
    print("\n".join(lines))
    return 0
