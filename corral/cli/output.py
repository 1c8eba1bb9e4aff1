"""How `corral get` prints: aligned tables (``table``, ``wide``), or JSON/YAML as the API gave it.

Columns per resource are data (:data:`COLUMNS`): a header and a function of
the item; ``wide`` adds the extra columns. JSON output is the API's list (or
the one item when a name was given) unchanged: that is the stable contract.
"""
import datetime
import json

from corral.spec.quantities import format_memory


def age(iso, now=None):
    """``2026-11-26T15:20:38Z`` as a short age (``42s``, ``7m``, ``3h``, ``2d``)."""
    if not iso:
        return "-"
    then = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    s = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _cond(item, type_):
    for c in item.get("conditions", []):
        if c["type"] == type_:
            return c["status"] if c["status"] != "False" else f"False({c['reason']})"
    return "-"


def _iso(t):
    """A UNIX time as the ISO text :func:`age` reads."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _last_backup(b):
    if not b:
        return "none"
    return f"{b['id']} (verified {'yes' if b['verified'] else 'no'})"


COLUMNS = {
    "apps": ([("NAME", lambda a: a["name"]),
              ("READY", lambda a: f"{a['ready']}/{a['desired']}"),
              ("REVISION", lambda a: a.get("revision") or "-"),
              ("BUILT", lambda a: _cond(a, "Built")),
              ("AVAILABLE", lambda a: _cond(a, "Available")),
              ("AGE", lambda a: age(a.get("created_at")))],
             [("GENERATION", lambda a: f"{a['observedGeneration']}/{a['generation']}"),
              ("PROGRESSING", lambda a: _cond(a, "Progressing")),
              ("IMAGE", lambda a: (a.get("image") or "-")[:19])]),
    "instances": ([("ID", lambda i: i["id"]),
                   ("APP", lambda i: i["app"]),
                   ("PROCESS", lambda i: i["process"]),
                   ("NODE", lambda i: i["node"]),
                   ("STATE", lambda i: i["state"]),
                   ("READY", lambda i: "yes" if i["ready"] else "no"),
                   ("ADDRESS", lambda i: f"{i['address']}:{i['port']}" if i.get("port") else (i.get("address") or "-")),
                   ("RESTARTS", lambda i: str(i.get("restarts", 0))),
                   ("AGE", lambda i: age(i.get("started_at")))],
                  [("REVISION", lambda i: i.get("revision") or "-"),
                   ("PID", lambda i: str(i.get("pid") or "-")),
                   ("MESSAGE", lambda i: i.get("message") or "")]),
    "nodes": ([("NAME", lambda n: n["name"]),
               ("STATE", lambda n: n["state"] + (",revoked" if n.get("credential") == "revoked" else "")),
               ("ADDRESS", lambda n: n.get("address") or "-"),
               ("INSTANCES", lambda n: str(n.get("instances", 0))),
               ("CPU", lambda n: f"{n['allocated'].get('cpu', 0):g}/{n['capacity'].get('cpu', 0):g}"),
               ("MEMORY", lambda n: f"{format_memory(n['allocated'].get('memory'))}/{format_memory(n['capacity'].get('memory'))}"),
               ("ISOLATION", lambda n: _cond({"conditions": [n["isolation"]] if n.get("isolation") else []},
                                             "Isolation")),
               ("LAST-SEEN", lambda n: age(n.get("last_seen")))],
              [("CREDENTIAL", lambda n: n.get("credential") or "-"),
               ("LABELS", lambda n: ",".join(f"{k}={v}" for k, v in sorted((n.get("labels") or {}).items())) or "-")]),
    "builds": ([("ID", lambda b: str(b["id"])),
                ("APP", lambda b: b["app"]),
                ("STATE", lambda b: b["state"]),
                ("CACHE", lambda b: b.get("cache") or "-"),
                ("DURATION", lambda b: f"{b['duration']:.1f}s" if b.get("duration") is not None else "-"),
                ("IMAGE", lambda b: (b.get("image") or "-")[:19]),
                ("ERROR", lambda b: b.get("error") or "")],
               [("PHASES", lambda b: " ".join(f"{k}={v:.1f}s" for k, v in (b.get("phases") or {}).items()))]),
    "runs": ([("ID", lambda r: r["id"]),
              ("APP", lambda r: r["app"]),
              ("PROCESS", lambda r: r["process"]),
              ("SLOT", lambda r: r.get("slot") or r["kind"]),
              ("NODE", lambda r: r.get("node") or "-"),
              ("STATE", lambda r: r["state"]),
              ("EXIT", lambda r: "-" if r.get("exitCode") is None else str(r["exitCode"])),
              ("DURATION", lambda r: f"{r['duration']:.1f}s" if r.get("duration") is not None else "-"),
              ("AGE", lambda r: age(r.get("created_at")))],
             [("ACTOR", lambda r: r.get("actor") or "-"),
              ("MESSAGE", lambda r: r.get("message") or "")]),
    "routes": ([("HOST", lambda r: r["host"]),
                ("PATH", lambda r: r["path"]),
                ("APP", lambda r: r["app"]),
                ("PROCESS", lambda r: r["process"]),
                ("READY", lambda r: str(r["ready"]))],
               [("BACKENDS", lambda r: " ".join(f"{b['address']}:{b['port']}" for b in r["backends"]) or "-")]),
    "services": ([("APP", lambda s: s["app"]),
                  ("NAME", lambda s: s["name"]),
                  ("TYPE", lambda s: s["type"]),
                  ("SERVER", lambda s: s["server"].split("://", 1)[-1].rpartition("@")[2].split("/")[0]),
                  ("STATUS", lambda s: s["state"]),
                  ("SIZE", lambda s: format_memory(s.get("size"))),
                  ("LAST-BACKUP", lambda s: _last_backup(s.get("lastBackup")))],
                 [("ON-DELETE", lambda s: s["onDelete"]),
                  ("MESSAGE", lambda s: s.get("message") or "")]),
    "backups": ([("ID", lambda b: b["id"]),
                 ("SERVICE", lambda b: b["service"]),
                 ("TYPE", lambda b: b["type"]),
                 ("SIZE", lambda b: format_memory(b["size"])),
                 ("VERIFIED", lambda b: "yes" if b["verified"] else f"no ({b['reason']})"),
                 ("AGE", lambda b: age(_iso(b["created_at"])))],
                [("SECONDS", lambda b: " ".join(f"{k}={v:.1f}s" for k, v in (b.get("seconds") or {}).items())),
                 ("REASON", lambda b: b["reason"])]),
    "tokens": ([("NAME", lambda t: t["name"]),
                ("ROLE", lambda t: t["role"]),
                ("STATE", lambda t: t["state"]),
                ("CREATED", lambda t: t["created"]),
                ("EXPIRES", lambda t: t["expires"] or "never"),
                ("LAST-USED", lambda t: t["lastUsed"] or "never")],
               [("CREATED-BY", lambda t: t["createdBy"]),
                ("REVOKED-BY", lambda t: t["revokedBy"] or "-")]),
    "events": ([("AGE", lambda e: age(e["time"])),
                ("OBJECT", lambda e: f"{e['kind']}/{e['name']}"),
                ("REASON", lambda e: e["reason"]),
                ("MESSAGE", lambda e: e["message"])],
               [("ACTOR", lambda e: e["actor"])]),
}


def table(rows, columns):
    """``rows`` of cells under headers, left-aligned, two spaces apart."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(columns, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def render(resource, data, fmt):
    """Text for ``data`` (a list, or one item) of ``resource`` in format ``fmt``."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    if fmt == "yaml":
        import yaml
        return yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip()
    items = data if isinstance(data, list) else [data]
    base, extra = COLUMNS[resource]
    cols = base + (extra if fmt == "wide" else [])
    if not items:
        return f"No {resource} found."
    return table([[fn(i) for _, fn in cols] for i in items], [h for h, _ in cols])
