"""The store's schema: its migrations, the column lists the queries read, and each row's record.

Both backends run the same DDL: ``{serial}``, ``{blob}``, ``{real}`` and
``{bool}`` are filled in by the backend. JSON columns hold canonical JSON text
(:func:`canonical_json`), so equal values are equal text.
"""
import json

from corral.canonical import canonical_json  # noqa: F401  (the backends take it from here)
from corral.store.base import AppRecord, BuildRecord, DesiredInstance, Event, GitSourceRecord, NodeRecord, RunRecord

# Each entry upgrades the schema from version i to i + 1. Never edit one that
# has shipped: append a new one.
MIGRATIONS = [
    [
        """CREATE TABLE meta (
            id INTEGER PRIMARY KEY,
            apps_version BIGINT NOT NULL)""",
        "INSERT INTO meta (id, apps_version) VALUES (1, 0)",
        """CREATE TABLE apps (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL,
            spec TEXT NOT NULL,
            source_digest TEXT NOT NULL,
            generation BIGINT NOT NULL,
            resource_version BIGINT NOT NULL,
            deleting {bool} NOT NULL,
            status TEXT NOT NULL,
            owner TEXT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL)""",
        """CREATE TABLE sources (
            digest TEXT PRIMARY KEY,
            data {blob} NOT NULL,
            created_at {real} NOT NULL)""",
        """CREATE TABLE desired_instances (
            id TEXT PRIMARY KEY,
            app TEXT NOT NULL,
            process TEXT NOT NULL,
            node TEXT NOT NULL,
            revision TEXT NOT NULL,
            image TEXT NOT NULL,
            spec TEXT NOT NULL,
            created_at {real} NOT NULL)""",
        "CREATE INDEX desired_instances_app ON desired_instances (app)",
        """CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            labels TEXT NOT NULL,
            capacity TEXT NOT NULL,
            cordoned {bool} NOT NULL,
            first_seen {real} NOT NULL,
            last_seen {real} NOT NULL)""",
        """CREATE TABLE builds (
            id {serial},
            key TEXT NOT NULL UNIQUE,
            app TEXT NOT NULL,
            inputs TEXT NOT NULL,
            state TEXT NOT NULL,
            image TEXT,
            artifact_url TEXT,
            artifact_sha256 TEXT,
            cache TEXT,
            phases TEXT NOT NULL,
            error TEXT,
            worker TEXT,
            heartbeat_at {real},
            created_at {real} NOT NULL,
            started_at {real},
            finished_at {real})""",
        "CREATE INDEX builds_state ON builds (state, id)",
        """CREATE TABLE events (
            id {serial},
            time {real} NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            reason TEXT NOT NULL,
            message TEXT NOT NULL,
            actor TEXT NOT NULL)""",
        "CREATE INDEX events_object ON events (kind, name, id)",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT,
            epoch BIGINT NOT NULL,
            expires_at {real} NOT NULL)""",
    ],
    [  # GitOps sources (reconciler/gitops); the apps they apply carry owner "gitsource/NAME@COMMIT"
        """CREATE TABLE gitsources (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL,
            spec TEXT NOT NULL,
            generation BIGINT NOT NULL,
            status TEXT NOT NULL,
            sync_requested_at {real},
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL)""",
    ],
    [  # rollout history (`corral rollout history|undo`) and node drain (`corral node drain`)
        """CREATE TABLE revisions (
            app TEXT NOT NULL,
            revision BIGINT NOT NULL,
            hash TEXT NOT NULL,
            image TEXT NOT NULL,
            spec TEXT NOT NULL,
            source_digest TEXT NOT NULL,
            generation BIGINT NOT NULL,
            created_at {real} NOT NULL,
            PRIMARY KEY (app, revision))""",
        "ALTER TABLE nodes ADD COLUMN draining {bool} NOT NULL DEFAULT FALSE",
    ],
    [  # layered images (builder): each build's layers, its lock, its progress, and its log's tail on failure
        "ALTER TABLE builds ADD COLUMN layers TEXT",
        "ALTER TABLE builds ADD COLUMN lock TEXT",
        "ALTER TABLE builds ADD COLUMN progress TEXT",
        "ALTER TABLE builds ADD COLUMN log_tail TEXT",
    ],
    [  # runs of scheduled processes, triggers and one-offs (reconciler/cron.py); a slot has one run, ever
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            app TEXT NOT NULL,
            process TEXT NOT NULL,
            slot BIGINT,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            node TEXT,
            command TEXT,
            exit_code INTEGER,
            message TEXT,
            created_at {real} NOT NULL,
            started_at {real},
            finished_at {real},
            actor TEXT NOT NULL,
            UNIQUE (app, process, slot))""",
        "CREATE INDEX runs_app ON runs (app, process)",
        "ALTER TABLE apps ADD COLUMN applied_at {real}",  # the last apply that changed the app (status writes do not)
    ],
    [  # app services (services/): each app's databases and Redis users, and their verified backups
        """CREATE TABLE services (
            app TEXT NOT NULL,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            server TEXT NOT NULL,
            state TEXT NOT NULL,
            on_delete TEXT NOT NULL,
            generation BIGINT NOT NULL,
            password TEXT NOT NULL,
            old_generations TEXT NOT NULL,
            rotate_requested {bool} NOT NULL,
            message TEXT NOT NULL,
            size BIGINT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            PRIMARY KEY (app, name))""",
        """CREATE TABLE service_backups (
            id TEXT PRIMARY KEY,
            app TEXT NOT NULL,
            service TEXT NOT NULL,
            type TEXT NOT NULL,
            path TEXT NOT NULL,
            size BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            verified {bool} NOT NULL,
            reason TEXT NOT NULL,
            manifest TEXT NOT NULL,
            slot TEXT,
            created_at {real} NOT NULL)""",
        "CREATE INDEX service_backups_app ON service_backups (app, service, created_at)",
    ],
    [  # one scheduled backup per slot: a deposed leader's second one is refused (services/, the keeper)
        """UPDATE service_backups SET slot = NULL
           WHERE slot IS NOT NULL AND EXISTS (
               SELECT 1 FROM service_backups o
               WHERE o.app = service_backups.app AND o.service = service_backups.service
                 AND o.slot = service_backups.slot
                 AND (o.created_at < service_backups.created_at
                      OR (o.created_at = service_backups.created_at AND o.id < service_backups.id)))""",
        "CREATE UNIQUE INDEX service_backups_slot ON service_backups (app, service, slot)",
    ],
    [  # named API tokens (`corral token`), kept by the sha256 of their secret, never the secret; and secrets
       # the cluster keeps in its store, not derived from the bus key (the GitSources' webhook key)
        """CREATE TABLE api_tokens (
            name TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            created_at {real} NOT NULL,
            created_by TEXT NOT NULL,
            expires_at {real},
            revoked_at {real},
            revoked_by TEXT,
            last_used_at {real})""",
        """CREATE TABLE cluster_secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            created_at {real} NOT NULL)""",
    ],
    [  # layer access (builder/web.py): the keys layer URLs are signed with, and the builders that serve layers
        """CREATE TABLE layer_keys (
            generation BIGINT PRIMARY KEY,
            secret TEXT NOT NULL,
            created_at {real} NOT NULL)""",
        """CREATE TABLE builders (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            seen_at {real} NOT NULL)""",
    ],
    [  # each node its own credential (corral/store/nodekeyrows.py): one-time join tokens, kept as the sha256 of
       # their secret, and each node's CurveZMQ public key; a revoked node keeps its row (revoked_at set)
        """CREATE TABLE join_tokens (
            id TEXT PRIMARY KEY,
            secret_sha256 TEXT NOT NULL,
            expires_at {real} NOT NULL,
            created_at {real} NOT NULL,
            created_by TEXT NOT NULL,
            used_at {real},
            used_by TEXT)""",
        """CREATE TABLE node_keys (
            name TEXT PRIMARY KEY,
            public_key TEXT UNIQUE,
            joined_at {real},
            revoked_at {real})""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

APP_COLUMNS = ("name, labels, spec, source_digest, generation, resource_version, deleting, "
               "status, owner, created_at, updated_at, applied_at")
# (builds.artifact_url and artifact_sha256, of the one-archive images before layers, are no longer
# read or written; they go in a later release, since a store stays readable by the release before.)
BUILD_COLUMNS = ("id, key, app, inputs, state, image, cache, "
                 "phases, error, worker, created_at, started_at, finished_at, layers, lock, progress, log_tail")
DESIRED_COLUMNS = "id, app, process, node, revision, image, spec, created_at"
NODE_COLUMNS = "name, address, labels, capacity, cordoned, first_seen, last_seen"
EVENT_COLUMNS = "id, time, kind, name, reason, message, actor"
RUN_COLUMNS = ("id, app, process, slot, kind, state, node, command, exit_code, message, created_at, "
               "started_at, finished_at, actor")
GITSOURCE_COLUMNS = "name, labels, spec, generation, status, sync_requested_at, created_at, updated_at"


def app_from_row(row) -> AppRecord:
    return AppRecord(
        name=row[0], labels=json.loads(row[1]), spec=json.loads(row[2]), source_digest=row[3],
        generation=int(row[4]), resource_version=int(row[5]), deleting=bool(row[6]),
        status=json.loads(row[7]), owner=row[8], created_at=row[9], updated_at=row[10],
        applied_at=row[11] if row[11] is not None else row[9])


def gitsource_from_row(row) -> GitSourceRecord:
    return GitSourceRecord(
        name=row[0], labels=json.loads(row[1]), spec=json.loads(row[2]), generation=int(row[3]),
        status=json.loads(row[4]), sync_requested_at=row[5], created_at=row[6], updated_at=row[7])


def build_from_row(row) -> BuildRecord:
    return BuildRecord(
        id=int(row[0]), key=row[1], app=row[2], inputs=json.loads(row[3]), state=row[4],
        image=row[5], cache=row[6],
        phases=json.loads(row[7]), error=row[8], worker=row[9], created_at=row[10],
        started_at=row[11], finished_at=row[12], layers=json.loads(row[13]) if row[13] else None,
        lock=row[14], progress=row[15], log_tail=row[16])


def desired_from_row(row, decoded) -> DesiredInstance:
    """``decoded``: spec text -> its dict, for this listing: the rows of one process
    share their spec, so 10,000 rows decode a few hundred specs (shared, read-only)."""
    spec = decoded.get(row[6])
    if spec is None:
        spec = decoded[row[6]] = json.loads(row[6])
    return DesiredInstance(id=row[0], app=row[1], process=row[2], node=row[3], revision=row[4],
                           image=row[5], spec=spec, created_at=row[7])


def node_from_row(row, draining=False) -> NodeRecord:
    return NodeRecord(name=row[0], address=row[1], labels=json.loads(row[2]),
                      capacity=json.loads(row[3]), cordoned=bool(row[4]), first_seen=row[5],
                      last_seen=row[6], draining=draining)


def event_from_row(row) -> Event:
    return Event(id=int(row[0]), time=row[1], kind=row[2], name=row[3], reason=row[4],
                 message=row[5], actor=row[6])


def run_from_row(row) -> RunRecord:
    return RunRecord(
        id=row[0], app=row[1], process=row[2], slot=None if row[3] is None else int(row[3]), kind=row[4],
        state=row[5], node=row[6], command=json.loads(row[7]) if row[7] else None,
        exit_code=None if row[8] is None else int(row[8]), message=row[9], created_at=row[10],
        started_at=row[11], finished_at=row[12], actor=row[13])


def run_to_row(run: RunRecord) -> tuple:
    return (run.id, run.app, run.process, run.slot, run.kind, run.state, run.node,
            canonical_json(run.command) if run.command is not None else None, run.exit_code, run.message,
            run.created_at, run.started_at, run.finished_at, run.actor)
