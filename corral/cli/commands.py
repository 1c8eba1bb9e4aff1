"""The user-facing verbs: apply, diff, get, describe, delete.

Each takes parsed arguments and a :class:`Client`, prints, and returns the
exit code. Manifests are loaded and validated here first (so errors name the
file and line), each app's source folder is packed and uploaded once (the
server never reads the client's disk), and the apply itself is one request:
all documents or none.

``get`` and ``describe`` only read: the spec loader (and with it jsonschema),
the source packer and the git export are imported by the verbs that take
manifests (apply, diff, delete -f), and by the ones that read a ``--timeout``.
"""
import json
import os
import sys
import time

from corral.cli.client import ClientError
from corral.cli.output import render

RESOURCES = {"apps": "apps", "app": "apps", "instances": "instances", "instance": "instances",
             "nodes": "nodes", "node": "nodes", "builds": "builds", "build": "builds",
             "events": "events", "event": "events", "runs": "runs", "run": "runs", "routes": "routes",
             "route": "routes"}


def _load(paths):
    """Validated documents of ``paths`` ("-" reads stdin)."""
    from corral.spec import load_paths
    stdin = sys.stdin.read() if "-" in paths else None
    return load_paths(paths, stdin=stdin)


def _upload_sources(client, docs, upload=True):
    """Pack every app's source folder; upload the ones the store lacks. Returns the request documents."""
    from corral.gitsource import GitSourceError
    out, packed = [], {}
    for d in docs:
        if d.kind == "GitSource":  # nothing to upload: the leader fetches the repository itself
            out.append({"doc": d.doc})
            continue
        source = d.doc["spec"]["source"]
        if isinstance(source, str):
            folder = os.path.normpath(os.path.join(d.base_dir, source))
            if not os.path.isdir(folder):
                raise ClientError(f"{d.file}:{d.line}: spec.source: folder {folder} does not exist")
        else:
            folder = json.dumps(source, sort_keys=True)   # one export per distinct git source
        if folder not in packed:
            try:
                packed[folder] = _pack(source, folder, d.doc["metadata"]["name"])
            except (OSError, ValueError, GitSourceError) as e:
                raise ClientError(f"{d.file}:{d.line}: spec.source: {e}")
            digest, data = packed[folder]
            if upload:
                status, _ = client.request("HEAD", f"/v1/sources/{digest}", ok=(200, 404))
                if status == 404:
                    client.request("PUT", f"/v1/sources/{digest}", data=data, idempotent=True)
        out.append({"doc": d.doc, "source_digest": packed[folder][0]})
    return out


def _pack(source, folder, app):
    """``(digest, data)`` of a source folder, or of a git source's folder at the commit its ref names."""
    import tempfile
    from corral.gitsource import export_git_source
    from corral.source import pack_source
    if isinstance(source, str):
        return pack_source(folder)
    with tempfile.TemporaryDirectory(prefix="corral-src-") as scratch:
        exported, commit = export_git_source(source, scratch)
        print(f"app/{app} source: {source['git']} at commit {commit}"
              + (f" ({source['path']})" if source.get("path") else ""), file=sys.stderr)
        return pack_source(exported)


def cmd_apply(args, client):
    reply = apply_files(client, args.filename, args.dry_run)
    if args.wait and not args.dry_run:
        from corral.spec.quantities import parse_duration
        timeout = parse_duration(args.timeout)
        for r in (r for r in reply["results"] if r.get("kind", "App") == "App"):
            wait_available(client, r["name"], r["generation"], timeout)
    return 0


def apply_files(client, paths, dry_run=False):
    """Apply the manifests ``paths`` in one request and print each document's outcome; return the
    API's reply (``{"results": [{"kind", "name", "action", "generation"}, ...]}``)."""
    docs = _load(paths)
    body = {"documents": _upload_sources(client, docs), "dryRun": dry_run}
    _, reply = client.request("POST", "/v1/apply", json=body, idempotent=True)
    suffix = " (dry run)" if dry_run else ""
    for r in reply["results"]:
        print(f"{r.get('kind', 'App').lower()}/{r['name']} {r['action']}{suffix}")
    return reply


def wait_available(client, name, generation, timeout, poll=0.5, clock=time.monotonic):
    """Return once ``name`` runs generation ``generation`` in full; ClientError when
    its build fails, its rollout misses its progress deadline, or ``timeout``
    passes (saying what is still missing). An unschedulable instance keeps it
    waiting: a node may yet join."""
    deadline = clock() + timeout
    app = None
    said = None
    while clock() < deadline:
        app = client.get(f"/v1/apps/{name}")
        conds = {c["type"]: c for c in app.get("conditions", [])}
        current = app.get("observedGeneration", 0) >= generation
        built = conds.get("Built", {})
        said = _show_build_progress(client, name, said)
        if current and built.get("status") == "False":
            _show_failed_build_log(client, name)
            raise ClientError(f"app {name}: the build failed: {built.get('message')}")
        prog = conds.get("Progressing", {})
        if current and prog.get("status") == "False" and prog.get("reason") == "ProgressDeadlineExceeded":
            raise ClientError(f"app {name}: the rollout failed: {prog.get('message')}")
        if current and prog.get("status") == "True" and prog.get("reason") == "Complete":
            print(f"app/{name} available: {app['ready']} of {app['desired']} instances ready at revision {app['revision']}")
            return app
        time.sleep(poll)
    why = "the reconciler has not seen it yet"
    if app and app.get("observedGeneration", 0) >= generation:
        conds = {c["type"]: c for c in app.get("conditions", [])}
        services = conds.get("ServicesReady", {})
        why = (services.get("status") == "False" and f"its services are not ready: {services.get('message')}"
               or conds.get("Progressing", {}).get("message") or conds.get("Available", {}).get("message") or why)
    raise ClientError(f"timed out after {timeout:g}s waiting for app {name}: {why}")


def _latest_build(client, name):
    builds = client.get(f"/v1/builds?app={name}")
    return builds[0] if builds else None


def _show_build_progress(client, name, said):
    """Print the phase of ``name``'s build in progress to stderr when it changed; return what was shown."""
    build = _latest_build(client, name)
    if build and build.get("state") == "building" and build.get("progress") and build["progress"] != said:
        print(f"app/{name} build {build['id']}: {build['progress']}", file=sys.stderr)
        return build["progress"]
    return said


def _show_failed_build_log(client, name):
    """Print the tail of ``name``'s failed build log to stderr, when the builder kept one."""
    build = _latest_build(client, name)
    if build and build.get("state") == "failed" and build.get("log_tail"):
        print(f"app/{name} build {build['id']} failed; the end of its log:", file=sys.stderr)
        for line in build["log_tail"].splitlines():
            print(f"  {line}", file=sys.stderr)


def cmd_diff(args, client):
    docs = _load(args.filename)
    _, reply = client.request("POST", "/v1/diff", json={"documents": _upload_sources(client, docs)},
                              idempotent=True)
    changed = False
    for d in reply["diffs"]:
        if d["action"] != "unchanged":
            changed = True
            if d["diff"]:
                sys.stdout.write(d["diff"])
            else:
                print(f"app/{d['name']} {d['action']}")
    return 1 if changed else 0


def _fetch(client, resource, name, show_secrets=False):
    params = {"showSecrets": "true"} if show_secrets and resource == "apps" else {}
    if resource == "apps" and name:
        return client.get(f"/v1/apps/{name}", params=params)
    if resource in ("events", "runs") and name:
        params = {"name" if resource == "events" else "app": name}
    items = client.get(f"/v1/{resource}", params=params)
    if name and resource == "routes":   # an app's routes, or one host's
        return [r for r in items if name in (r["app"], r["host"])]
    if name and resource in ("instances", "nodes", "builds"):
        key = "id" if resource in ("instances", "builds") else "name"
        match = [i for i in items if str(i[key]) == name or (resource == "instances" and i["app"] == name)]
        if not match:
            raise ClientError(f"{resource[:-1]} {name!r} not found")
        return match[0] if resource != "instances" or match[0]["id"] == name else match
    return items


def cmd_get(args, client):
    resource = RESOURCES.get(args.resource)
    if resource is None:
        raise ClientError(f"unknown resource {args.resource!r}; one of apps, instances, nodes, builds, events, runs, routes")
    if args.watch and resource in ("apps", "instances", "nodes", "events") and not args.show_secrets:
        from corral.cli.watch import watch   # the API's change stream (what the dashboard shows)
        return watch(client, resource, args.name, args.output)
    last = None   # builds, and apps with their secrets, are read again each second
    while True:
        text = render(resource, _fetch(client, resource, args.name, args.show_secrets), args.output)
        if text != last:
            print(text, flush=True)
            last = text
        if not args.watch:
            return 0
        time.sleep(1.0)


def cmd_describe(args, client):
    if args.kind not in ("app", "apps"):
        raise ClientError(f"describe knows 'app', not {args.kind!r}")
    app = client.get(f"/v1/apps/{args.name}")
    instances = client.get("/v1/instances", params={"app": args.name})
    events = client.get("/v1/events", params={"kind": "app", "name": args.name, "limit": 20})
    spec = app["spec"]
    lines = [f"Name:         {app['name']}",
             f"Labels:       {', '.join(f'{k}={v}' for k, v in sorted(app['labels'].items())) or '-'}",
             f"Generation:   {app['generation']} (observed {app['observedGeneration']})",
             f"Revision:     {app.get('revision') or '-'}",
             f"Image:        {app.get('image') or '-'}",
             f"Source:       {app['source']}",
             f"Instances:    {app['ready']} ready of {app['desired']} desired",
             f"Deleting:     {'yes' if app['deleting'] else 'no'}",
             "Processes:"]
    for pname, p in sorted(spec["processes"].items()):
        cmd = p["command"] if isinstance(p["command"], str) else " ".join(p["command"])
        if "schedule" in p:
            lines.append(f"  {pname}: {p['schedule']!r} ({p.get('timezone', 'UTC')}) x {cmd}")
        else:
            lines.append(f"  {pname}: {p.get('instances', 1)} x {cmd}" + ("  (port)" if p.get("port") else ""))
    lines += schedule_lines(spec, client.get("/v1/runs", params={"app": args.name}) if _scheduled(spec) else [])
    lines.append("Conditions:")
    for c in app["conditions"]:
        lines.append(f"  {c['type']:<12} {c['status']:<8} {c['reason']:<22} {c['message']}")
    lines.append("Instances:")
    lines.append("  " + (render("instances", instances, "table").replace("\n", "\n  ") if instances else "none"))
    said = [i for i in instances if i.get("message")]
    if said:   # why an instance is not running, as the agent put it (kubectl's container State/Message)
        lines.append("Instance messages:")
        lines += [f"  {i['id']}: {i['message']}" for i in said]
    lines.append("Events:")
    lines.append("  " + (render("events", events, "table").replace("\n", "\n  ") if events else "none"))
    print("\n".join(lines))
    return 0


def _scheduled(spec):
    return any("schedule" in p for p in spec["processes"].values())


def schedule_lines(spec, runs, now=None):
    """``describe app``'s Schedules section: each scheduled process's next slot and its last
    run's outcome (``runs``: the app's runs as the API lists them, oldest first)."""
    import datetime
    from corral.schedule import ScheduleError, next_slot
    if not _scheduled(spec):
        return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    out = ["Schedules:"]
    for pname, p in sorted(spec["processes"].items()):
        if "schedule" not in p:
            continue
        try:
            nxt = next_slot(p["schedule"], p.get("timezone"), now)
        except ScheduleError as e:
            nxt = str(e)
        ended = [r for r in runs if r["process"] == pname and r["state"] in ("succeeded", "failed", "skipped")]
        last = "none yet"
        if ended:
            r = ended[-1]
            code = f", exit {r['exitCode']}" if r.get("exitCode") is not None else ""
            took = f", {r['duration']:.1f}s" if r.get("duration") is not None else ""
            last = f"run {r['id']} {r['state']}{code}{took}" + (f" ({r['message']})" if r.get("message") else "")
        when = nxt.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(nxt, datetime.datetime) else (nxt or "none")
        out.append(f"  {pname}: next {when}; last {last}")
    return out


def retention_lines(app, services):
    """What a delete says of the app's services (``[{name, type, onDelete}]``): kept or dropped. Pure."""
    kept = [f"{s['name']} ({s['type']})" for s in services if s["onDelete"] != "Delete"]
    dropped = [f"{s['name']} ({s['type']})" for s in services if s["onDelete"] == "Delete"]
    lines = []
    if kept:
        lines.append(f"app/{app}: its services {', '.join(kept)} and their backups are kept (onDelete: Retain); "
                     f"see `corral get services {app}`")
    if dropped:
        lines.append(f"app/{app}: its services {', '.join(dropped)} are dropped after a final verified backup "
                     f"(onDelete: Delete); the backups are kept")
    return "\n".join(lines)


DELETE_KINDS = {"app": "App", "apps": "App", "gitsource": "GitSource", "gitsources": "GitSource"}


def cmd_delete(args, client):
    """Delete apps and GitSources (sources first, so that none re-applies an app
    being deleted), then wait, unless ``--no-wait``, until every app deleted is gone."""
    if args.filename:
        targets = [(d.kind, d.name) for d in _load(args.filename)]
    elif args.kind in DELETE_KINDS and args.name:
        targets = [(DELETE_KINDS[args.kind], args.name)]
    else:
        raise ClientError("say what to delete: `corral delete app NAME`, `corral delete gitsource NAME` "
                          "or `corral delete -f PATH`")
    apps = [name for kind, name in targets if kind == "App"]
    for name in (name for kind, name in targets if kind == "GitSource"):
        _, reply = client.request("DELETE", f"/v1/gitsources/{name}",
                                  params={"cascade": "true" if args.cascade else "false"})
        owned = ", ".join(reply["apps"]) or "none"
        if args.cascade:
            print(f"gitsource/{name} deleted with its apps: {owned}")
            apps += [a for a in reply["apps"] if a not in apps]
        else:
            print(f"gitsource/{name} deleted; its apps keep running, managed by hand: {owned}")
    for name in (name for kind, name in targets if kind == "App"):
        _, reply = client.request("DELETE", f"/v1/apps/{name}", idempotent=True)
        print(f"app/{name} deleting")
        said = retention_lines(name, (reply or {}).get("services") or [])
        if said:
            print(said)
    if args.wait:
        from corral.spec.quantities import parse_duration
        deadline = time.monotonic() + parse_duration(args.timeout)
        for name in apps:
            while True:
                status, _ = client.request("GET", f"/v1/apps/{name}", ok=(200, 404))
                if status == 404:
                    print(f"app/{name} deleted")
                    break
                if time.monotonic() > deadline:
                    raise ClientError(f"timed out after {args.timeout} waiting for app {name} to stop")
                time.sleep(0.5)
    return 0
