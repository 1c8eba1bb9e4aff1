"""Backups of the control-plane state, and restores into an empty store.

A backup holds what people declared and what happened: every table of the
schema except the observed and rebuildable ones (:data:`NOT_CARRIED`: nodes,
leases, the leader's desired instance table, builds, counters, the layer keys
and the builders' heartbeats). Apps, source
archives and events are carried, and so is any table a later migration adds,
unless it is named in :data:`NOT_CARRIED`. It is read in one transaction that
sees one snapshot (PostgreSQL: REPEATABLE READ; SQLite: one read transaction
in WAL mode), so it is consistent as of one moment, from either backend.

The file is self-describing gzip'd JSON::

    {"format": "corral-backup", "version": 1, "schema_version": N,
     "taken_at": "2026-11-26T15:20:38Z", "backend": "PostgresStore",
     "tables": {"apps": {"columns": [...], "rows": [[...], ...]}, ...}}

Values are JSON as they are, with two exceptions decided by the column's
declared type in ``MIGRATIONS``: ``{bool}`` columns are true/false (SQLite
stores 0/1), ``{blob}`` columns are base64 text. Ids of ``{serial}`` columns
are not kept: restored rows get new ones in their old order, so the store's
own counters stay right.
"""
import base64
import gzip
import io
import json
import os
import re
import time

from corral import private
from corral.store.base import Conflict
from corral.store.schema import MIGRATIONS, SCHEMA_VERSION
from corral.store.sql import SQLStore

FORMAT = "corral-backup"
VERSION = 1
# layer_keys: a restored store makes a key of its own (a backup holds no credential for layers);
# builders: observed, each builder says it is alive again within seconds.
NOT_CARRIED = frozenset({"meta", "schema_version", "nodes", "leases", "desired_instances", "builds",
                         "layer_keys", "builders"})

_CREATE = re.compile(r"^\s*CREATE TABLE (\w+) \((.*)\)\s*$", re.S)
_ADD = re.compile(r"^\s*ALTER TABLE (\w+) ADD COLUMN (\w+) (\S+)", re.S)


def schema_columns(migrations=MIGRATIONS) -> dict:
    """``{table: {column: type word}}`` as the migrations declare them, in order. Pure.

    The type word is the first word after the column name, e.g. ``TEXT`` or
    ``{bool}``; tables dropped by a later migration are left out.
    """
    tables = {}
    for steps in migrations:
        for statement in steps:
            m = _CREATE.match(statement)
            if m:
                cols = {}
                for part in re.split(r",\s*\n", m.group(2)):
                    words = part.split()
                    if len(words) >= 2 and words[0].upper() not in ("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
                        cols[words[0]] = words[1]
                tables[m.group(1)] = cols
                continue
            m = _ADD.match(statement)
            if m and m.group(1) in tables:
                tables[m.group(1)][m.group(2)] = m.group(3)
                continue
            m = re.match(r"^\s*DROP TABLE (?:IF EXISTS )?(\w+)", statement)
            if m:
                tables.pop(m.group(1), None)
    return tables


def carried_tables(migrations=MIGRATIONS) -> dict:
    """``{table: {column: type}}`` of the tables a backup carries, serial columns left out. Pure."""
    out = {}
    for table, cols in schema_columns(migrations).items():
        if table not in NOT_CARRIED:
            out[table] = {c: t for c, t in cols.items() if t != "{serial}"}
    return out


def _encode(value, kind):
    if value is None:
        return None
    if kind == "{bool}":
        return bool(value)
    if kind == "{blob}":
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _decode(value, kind):
    if value is None:
        return None
    if kind == "{bool}":
        return bool(value)
    if kind == "{blob}":
        return base64.b64decode(value)
    return value


def _order(table, all_columns):
    """Rows in a stable order: by the serial id when there is one (their history), else the first column."""
    serial = [c for c, t in all_columns.items() if t == "{serial}"]
    return serial[0] if serial else next(iter(all_columns))


def dump(store: SQLStore, now=None) -> dict:
    """The whole control-plane state of ``store`` as a backup document, read from one snapshot."""
    everything = schema_columns()
    carried = carried_tables()

    def work(cur):
        tables = {}
        for table, cols in carried.items():
            names = list(cols)
            cur.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY {_order(table, everything[table])}")
            rows = [[_encode(v, cols[c]) for v, c in zip(row, names)] for row in cur.fetchall()]
            tables[table] = {"columns": names, "rows": rows}
        return tables

    tables = store.read_snapshot(work)
    taken = time.gmtime(time.time() if now is None else now)
    return {"format": FORMAT, "version": VERSION, "schema_version": SCHEMA_VERSION,
            "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", taken), "backend": type(store).__name__,
            "tables": tables}


def file_name(doc: dict) -> str:
    """``corral-backup-20261126T152038Z.json.gz`` for a backup taken at that moment. Pure."""
    return f"corral-backup-{doc['taken_at'].replace('-', '').replace(':', '')}.json.gz"


def write(doc: dict, folder: str) -> str:
    """Write the backup into ``folder`` (created 0700 when missing); return its path.

    A backup holds every app's env, secrets included: the file is 0600, written under a
    temporary name created exclusively (never a fixed name that another user could have
    planted a link at), fsynced, then renamed into place (:func:`corral.private.replace_with`).
    """
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, file_name(doc))

    def fill(raw):
        with gzip.GzipFile(fileobj=raw, mode="wb") as gz, io.TextIOWrapper(gz, encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"), ensure_ascii=False)

    return private.replace_with(path, fill)


def read(path: str) -> dict:
    """The backup document in ``path``; ValueError (one sentence naming the file) when it is not one."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable corral backup: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a corral backup (no \"format\": \"{FORMAT}\" in it)")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path} is a corral backup of format version {doc.get('version')!r}; "
                         f"this corral reads version {VERSION}")
    if not isinstance(doc.get("schema_version"), int) or doc["schema_version"] > SCHEMA_VERSION:
        raise ValueError(f"{path} was taken from schema version {doc.get('schema_version')!r}, newer than "
                         f"this corral's {SCHEMA_VERSION}; restore it with a newer corral")
    if not isinstance(doc.get("tables"), dict):
        raise ValueError(f"{path} has no \"tables\" mapping")
    return doc


def restore(store: SQLStore, doc: dict, force: bool = False) -> dict:
    """Load a backup document into ``store`` in one transaction; return ``{table: rows restored}``.

    The store must hold none of the carried state (no app, source, event...),
    else Conflict names what it holds, unless ``force``, which first removes
    it. Tables or columns the backup has and this schema does not are an
    error; columns this schema added since are left to their defaults.
    """
    carried = carried_tables()
    tables = doc["tables"]
    for table, body in tables.items():
        if table not in carried:
            raise ValueError(f"the backup has a table {table!r} that this corral does not restore")
        unknown = [c for c in body.get("columns", []) if c not in carried[table]]
        if unknown:
            raise ValueError(f"the backup's table {table!r} has columns {unknown} that this corral does not know")

    def work(cur):
        held = {}
        for table in carried:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            count = int(cur.fetchone()[0])
            if count:
                held[table] = count
        if held and not force:
            what = ", ".join(f"{n} {t}" for t, n in sorted(held.items()))
            raise Conflict(f"the store is not empty ({what}); restore only into an empty store, "
                           f"or pass --force to replace its state")
        for table in carried:
            cur.execute(f"DELETE FROM {table}")
        counts = {}
        for table, body in tables.items():
            names = body["columns"]
            kinds = [carried[table][c] for c in names]
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            for row in body["rows"]:
                cur.execute(sql, [_decode(v, k) for v, k in zip(row, kinds)])
            counts[table] = len(body["rows"])
        cur.execute("UPDATE meta SET apps_version = apps_version + 1 WHERE id = 1")
        return counts

    try:
        return store.write_transaction(work)
    except (KeyError, TypeError) as e:
        raise ValueError(f"the backup is malformed: {e!r}") from None
