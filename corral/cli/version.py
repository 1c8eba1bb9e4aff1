"""`corral version`: this client's version, and that of every daemon it reaches.

Reconcilers answer on their ``/healthz`` (no token), with the bus version and
both store schema versions (the one they migrate to, the one the store
holds); agents say theirs in their reports (``/v1/nodes``); builders on
their ``/healthz``, found in the client config (``builders``, which
``corral up`` writes), ``CORRAL_BUILDERS`` or ``--builder``. A daemon that
does not answer is listed as unreachable; one outside the supported skew of
the client (one minor release, :func:`corral.versions.skew`) is marked.
"""
import json

import corral
from corral import versions
from corral.cli.client import Client, ClientError, Unreachable, connect, load_full_config
from corral.cli.verbs import add_verb
from corral.store.schema import SCHEMA_VERSION

ASK_TIMEOUT = 3.0
MAX_ANSWER = 1 << 20   # bytes read of a daemon's answer: a health check is small, whoever answers


def add_parser(sub):
    """Register `corral version` on the subparsers ``sub``."""
    v = add_verb(sub, "version", "print this client's version and that of every reconciler, agent and builder "
                                 "it reaches", ["corral version", "corral version -o json"])
    v.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="table (default) or JSON (a list of {role, name, version, bus, schema, ...})")
    v.add_argument("--builder", action="append", default=[], metavar="URL",
                   help="a builder's URL to ask too (repeatable; also CORRAL_BUILDERS and the config's builders)")
    v.add_argument("--client", action="store_true", help="only this client's version: ask no daemon")


def fetch_json(url, path, token=None):
    """The JSON answer of GET ``url`` + ``path``; raises Unreachable (with the reason) when there is none."""
    conn, base = connect(url, ASK_TIMEOUT, ASK_TIMEOUT)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", base + path, headers=headers)
        r = conn.getresponse()
        body = r.read(MAX_ANSWER)
        if r.status != 200:
            raise Unreachable(f"HTTP {r.status}")
        return json.loads(body)
    except (OSError, ValueError) as e:
        raise Unreachable(str(e) or type(e).__name__) from None
    finally:
        conn.close()


def reconciler_row(url, health):
    """One reconciler's row from its ``/healthz`` answer (None when it gave none). Pure."""
    if health is None:
        return {"role": "reconciler", "name": url, "version": None, "error": "unreachable"}
    note = "leader" if health.get("leader") else ""
    return {"role": "reconciler", "name": health.get("name") or url, "url": url, "version": health.get("version"),
            "bus": health.get("bus"), "schema": health.get("schema"), "store_schema": health.get("store_schema"),
            "leader": bool(health.get("leader")), "note": note}


def agent_rows(nodes):
    """The agents' rows from ``/v1/nodes``: each node's reported version (None until it reports). Pure."""
    return [{"role": "agent", "name": n.get("name"), "version": n.get("version"), "state": n.get("state")}
            for n in nodes]


def builder_row(url, health):
    """One builder's row from its ``/healthz`` answer (None when it gave none). Pure."""
    if health is None:
        return {"role": "builder", "name": url, "version": None, "error": "unreachable"}
    return {"role": "builder", "name": url, "version": health.get("version"), "schema": health.get("schema")}


def judge(rows, mine=corral.__version__):
    """``rows`` with ``skew`` set on each row that has a version: whether it is within the supported
    skew of ``mine``. Pure."""
    return [dict(r, skew=versions.skew(mine, r["version"])) if r.get("version") else r for r in rows]


def gather(urls, token, builders, fetch=fetch_json):
    """Every row `corral version` shows: the client's, each reconciler's, each agent's, each builder's."""
    rows = [{"role": "client", "name": "corral", **versions.local(SCHEMA_VERSION)}]
    for url in urls:
        try:
            rows.append(reconciler_row(url, fetch(url, "/healthz")))
        except Unreachable as e:
            rows.append(dict(reconciler_row(url, None), error=f"unreachable: {e}"))
    if urls:
        try:
            rows += agent_rows(Client(urls, token, timeout=ASK_TIMEOUT).get("/v1/nodes"))
        except ClientError as e:
            rows.append({"role": "agent", "name": "*", "version": None, "error": str(e)})
    for url in builders:
        try:
            rows.append(builder_row(url, fetch(url, "/healthz")))
        except Unreachable as e:
            rows.append(dict(builder_row(url, None), error=f"unreachable: {e}"))
    return judge(rows)


def table(rows):
    """The rows as aligned text: role, name, version, bus, schema, and what is wrong or notable. Pure."""
    lines = [("ROLE", "NAME", "VERSION", "BUS", "SCHEMA", "NOTE")]
    for r in rows:
        notes = [r[k] for k in ("error", "note") if r.get(k)]
        if r.get("store_schema") is not None and r.get("store_schema") != r.get("schema"):
            notes.append(f"store schema {r['store_schema']}")
        if r.get("skew") is False:
            notes.append(f"outside the supported skew of this client ({corral.__version__}): one minor release")
        if r["role"] == "agent" and r.get("version") is None and not r.get("error"):
            notes.append("has not reported")
        lines.append((r["role"], str(r.get("name")), r.get("version") or "-", _text(r.get("bus")),
                      _text(r.get("schema")), "; ".join(notes)))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[5]).rstrip()
                     for line in lines)


def _text(value):
    return "-" if value is None else str(value)


def run(args):
    """Print the versions; exit 0 (a daemon that does not answer is listed, not an error)."""
    if args.client:
        rows = judge([{"role": "client", "name": "corral", **versions.local(SCHEMA_VERSION)}])
    else:
        try:
            urls, token, builders = load_full_config()
        except ClientError:
            urls, token, builders = [], None, []
        rows = gather(urls, token, list(dict.fromkeys(builders + args.builder)))
    print(json.dumps(rows, indent=2) if args.output == "json" else table(rows))
    return 0
