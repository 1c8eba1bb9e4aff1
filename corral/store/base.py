"""The store interface: every read and write of cluster state goes through it.

Two backends implement it with the same schema and the same tests: SQLite (the
embedded default, WAL mode) and PostgreSQL through psycopg2. Only modules under
``corral/store`` speak SQL.

Records are frozen dataclasses; JSON-valued fields (specs, statuses, phases)
are plain dicts/lists that callers must treat as read-only.

Fencing: writes of desired state and app status carry the writer's epoch. The
backend checks, in the same transaction, that the ``leader`` lease still has
that epoch, and raises :class:`Fenced` otherwise, so a stale leader can do no
harm even if it still believes it leads.
"""
import abc
import dataclasses
from typing import Any, Optional

from corral.runs import RunRecord  # noqa: F401  (a record of the store, kept where pure cores may import it)

from corral.owners import owner_source  # noqa: F401  (the store's callers take it from here too)


class StoreError(Exception):
    """The store could not do what was asked (connection lost, timeout, ...)."""


class Fenced(StoreError):
    """The writer's epoch is no longer the leader lease's epoch."""


class Conflict(StoreError):
    """A compare-and-set failed: the object changed since it was read."""


class NewerSchema(StoreError):
    """The store's schema is newer than this corral's: it may read and write it (migrations within one
    minor release only add), but never lead on it. ``store`` and ``code`` are the two versions."""

    def __init__(self, store, code):
        super().__init__(f"the store's schema is version {store}, newer than this corral's {code}")
        self.store, self.code = store, code


@dataclasses.dataclass(frozen=True)
class AppRecord:
    """One ``kind: App`` as stored.

    ``spec`` is the validated spec with defaults filled in; ``source_digest``
    is the sha256 of the uploaded source archive. ``generation`` grows when
    (labels, spec, source_digest) change, ``resource_version`` on every write
    (status included). ``deleting`` is set by delete; the leader purges the
    row once no instance remains. ``status`` is written by the leader only.
    """

    name: str
    labels: dict
    spec: dict
    source_digest: str
    generation: int
    resource_version: int
    deleting: bool
    status: dict
    created_at: float
    updated_at: float
    owner: Optional[str] = None  # e.g. "gitsource/NAME@commit"; None when applied by hand
    applied_at: Optional[float] = None  # the last apply that changed it (created_at for older rows)


@dataclasses.dataclass(frozen=True)
class ServiceRecord:
    """One service of an app as provisioned (services/): ``state`` is ``ready``, ``failed`` (``message``
    says why) or ``retained`` (kept after its app was deleted or it left the spec); ``on_delete`` is what
    its app's spec said of deletion (``Retain`` or ``Delete``) when last seen; ``password`` is the
    credential of ``generation``; ``old_generations`` are logins still to retire after a rotation."""

    app: str
    name: str
    type: str
    server: str
    state: str
    generation: int
    password: str
    on_delete: str = "Retain"
    old_generations: tuple = ()
    rotate_requested: bool = False
    message: str = ""
    size: Optional[int] = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class NodeKeyRecord:
    """A node's own credential as the store keeps it: the CurveZMQ public key (z85 text) it joined
    with, None for a node revoked by name before it ever joined; ``revoked_at`` None while it holds."""

    name: str
    public_key: Optional[str]
    joined_at: Optional[float]
    revoked_at: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class ServiceBackupRecord:
    """A backup of a service, as its manifest says (``manifest``), with whether it was verified and why;
    ``slot``: the schedule slot it was taken for, None when asked for by hand."""

    id: str
    app: str
    service: str
    type: str
    path: str
    size: int
    sha256: str
    verified: bool
    reason: str
    manifest: dict
    created_at: float
    slot: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    """What one document of an apply did: ``created``, ``configured`` or ``unchanged``."""

    name: str
    action: str
    generation: int
    kind: str = "App"


@dataclasses.dataclass(frozen=True)
class GitSourceRecord:
    """One ``kind: GitSource`` as stored.

    ``spec`` is validated with defaults filled in; ``generation`` grows when
    labels or spec change. ``status`` is written by the leader's sync only
    (fetched and synced commit, last error, per-app sync state).
    ``sync_requested_at`` is the store's time of the last `corral sync` or
    webhook call, or None.
    """

    name: str
    labels: dict
    spec: dict
    generation: int
    status: dict
    sync_requested_at: Optional[float]
    created_at: float
    updated_at: float


@dataclasses.dataclass(frozen=True)
class DesiredInstance:
    """One row of the desired instance table, written by the leader only.

    ``spec`` holds what the agent needs to run it (command, env, port,
    restart, drainPeriod, stopGracePeriod, resources, health) as decided at
    placement; ``revision`` is the app revision number as a string.
    """

    id: str
    app: str
    process: str
    node: str
    revision: str
    image: str
    spec: dict
    created_at: float


@dataclasses.dataclass(frozen=True)
class NodeRecord:
    """What the store remembers of a node; liveness is observed, not stored."""

    name: str
    address: str
    labels: dict
    capacity: dict
    cordoned: bool
    first_seen: float
    last_seen: float
    draining: bool = False  # `corral node drain`: cordoned, and its instances move off


@dataclasses.dataclass(frozen=True)
class RevisionRecord:
    """One revision of an app as the leader first rolled it out: what undo goes back to.

    ``revision`` is the app's revision number; ``hash`` identifies (image,
    process specs); ``spec`` and ``source_digest`` are the app as applied then.
    """

    app: str
    revision: int
    hash: str
    image: str
    spec: dict
    source_digest: str
    generation: int
    created_at: float


@dataclasses.dataclass(frozen=True)
class BuildState:
    """What the leader needs of a build in each pass: its outcome and, once built, the image's layers."""

    key: str
    app: str
    state: str
    image: Optional[str]
    error: Optional[str]
    layers: Optional[list]


@dataclasses.dataclass(frozen=True)
class BuilderRecord:
    """A builder as its heartbeat says: where it serves layers, and ``age``: seconds since it said so."""

    name: str
    url: str
    age: float


@dataclasses.dataclass(frozen=True)
class BuildRecord:
    """One build job and its outcome.

    ``key`` identifies the build inputs (source digest, requirements, python)
    and is unique: enqueueing the same key twice returns the existing row.
    ``image`` (``sha256:...``) is set by the builder when it knows it.
    ``state``: queued | building | succeeded | failed.
    """

    id: int
    key: str
    app: str
    inputs: dict
    state: str
    image: Optional[str]
    cache: Optional[str]
    phases: dict
    error: Optional[str]
    worker: Optional[str]
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    layers: Optional[list] = None    # [{"kind": "env"|"code", "id", "sha256", "size", "url"}, ...]
    lock: Optional[str] = None       # the resolved requirement set: name==version with hashes
    progress: Optional[str] = None   # what a building build does now ("resolve", "install", ...)
    log_tail: Optional[str] = None   # the last lines of a failed build's log


@dataclasses.dataclass(frozen=True)
class Event:
    """Who did what to which object, and why."""

    id: int
    time: float
    kind: str      # "app", "instance", "node", "build"
    name: str
    reason: str    # CamelCase, e.g. "Scheduled", "Stopped", "BuildFailed"
    message: str
    actor: str     # "reconciler/r1", "cli", "agent/node-1", ...


@dataclasses.dataclass(frozen=True)
class ApiTokenRecord:
    """A named API token as stored: ``token_hash`` is the sha256 (hex) of its secret, which the store
    never holds; ``role`` one of corral.auth.ROLES; ``created_at`` the time of its current secret (a
    rotation makes a new one); ``expires_at``, ``revoked_at`` and ``last_used_at`` None when not so."""

    name: str
    token_hash: str
    role: str
    created_at: float
    created_by: str
    expires_at: Optional[float] = None
    revoked_at: Optional[float] = None
    revoked_by: Optional[str] = None
    last_used_at: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Lease:
    name: str
    holder: Optional[str]
    epoch: int
    expires_at: float


class Store(abc.ABC):
    """The one interface over SQLite and PostgreSQL.

    Every method is its own transaction. Times are seconds since the epoch
    (floats). Methods raise :class:`StoreError` for backend failures, with
    one sentence saying what failed.
    """

    # --- lifecycle -----------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; idempotent, safe for two daemons at once. A schema newer
        than this corral's is left as it is (see :class:`NewerSchema`)."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The version of the schema the store holds (0 before the first migration)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    # --- apps ----------------------------------------------------------
    @abc.abstractmethod
    def apply_apps(self, docs: list, actor: str, dry_run: bool = False, gitsources: tuple = (),
                   refuse=None) -> list:
        """Create or update apps (and GitSources) in ONE transaction; return an ApplyResult per doc.

        Each doc is a dict ``{"name", "labels", "spec", "source_digest"}``
        (optionally ``"owner"``; without it an existing app keeps its owner,
        so a hand apply of a synced app stays owned and shows as drift).
        Each of ``gitsources`` is ``{"name", "labels", "spec"}``; their
        results follow the apps'. An existing app whose labels, spec and
        source digest are all equal is ``unchanged`` (no write at all, no
        generation bump; a new ``owner`` from another source is recorded
        without a bump). A changed one is ``configured``: generation and
        resource_version grow by one. Applying to an app that is being
        deleted revives it (``deleting`` false, generation grows). Records an
        event per created/configured app. With ``dry_run`` nothing is written.

        ``refuse(apps)``, when given, is called in the transaction once every
        other writer of apps waits, with every stored app (AppRecords): a
        sentence it returns refuses the apply (Conflict, nothing written). So
        a rule across apps (one owner per host and path) holds under
        concurrent applies.
        """

    @abc.abstractmethod
    def get_app(self, name: str) -> Optional[AppRecord]:
        """The app, or None."""

    @abc.abstractmethod
    def list_apps(self, names=None) -> list:
        """All apps (including those being deleted), sorted by name; only those named in ``names``
        (an iterable) when given: a sync of a few apps reads those, not thousands."""

    @abc.abstractmethod
    def mark_app_deleting(self, name: str, actor: str) -> bool:
        """Set ``deleting``; returns False when there is no such app."""

    @abc.abstractmethod
    def purge_app(self, name: str, epoch: int) -> None:
        """Remove an app row (leader only, fenced)."""

    @abc.abstractmethod
    def set_app_status(self, name: str, status: dict, epoch: int) -> None:
        """Replace the app's status (leader only, fenced); bumps resource_version only."""

    @abc.abstractmethod
    def set_app_statuses(self, statuses: dict, epoch: int) -> list:
        """Replace many apps' statuses (name -> status) in one fenced transaction; returns
        the names of apps that no longer exist."""

    @abc.abstractmethod
    def apps_version(self) -> int:
        """A number that changes whenever any app row changes (cheap change detection)."""

    # --- GitOps sources ---------------------------------------------------
    @abc.abstractmethod
    def get_gitsource(self, name: str) -> Optional[GitSourceRecord]:
        """The GitSource, or None."""

    @abc.abstractmethod
    def list_gitsources(self) -> list:
        """All GitSources, sorted by name."""

    @abc.abstractmethod
    def request_gitsource_sync(self, name: str) -> Optional[float]:
        """Ask the leader to sync now; returns the store's time of the request, None when there is no such source."""

    @abc.abstractmethod
    def set_gitsource_status(self, name: str, status: dict, epoch: int) -> None:
        """Replace the source's status (leader only, fenced); a missing source is not an error."""

    @abc.abstractmethod
    def delete_gitsource(self, name: str, cascade: bool, actor: str) -> Optional[list]:
        """Remove a source in one transaction; return the names of the apps it owned, None when there is no such source.

        With ``cascade`` those apps are marked deleting (as ``mark_app_deleting``);
        without, they are released: their owner is cleared, they keep running and
        are managed by hand from then on (kubectl's ``--cascade=orphan``). Either
        way each gets an event. A sync of the source that was under way writes
        nothing once the source is gone (:meth:`sync_gitsource` refuses).
        """

    @abc.abstractmethod
    def sync_gitsource(self, name: str, epoch: int, apply: list, prune: list, status: dict, actor: str,
                       refuse=None) -> tuple:
        """Apply one commit of a source in ONE fenced transaction; return ``(results, pruned names)``.

        ``apply`` are app docs as for :meth:`apply_apps`, each with its
        ``owner``; ``prune`` names apps to mark deleting. Only apps this
        source owns are pruned (any other name is skipped), and an app owned
        by another source is never taken over (Conflict, nothing written), and
        a source deleted meanwhile writes nothing (Conflict).
        ``status`` becomes the source's status in the same transaction.
        ``refuse``: as for :meth:`apply_apps`.
        """

    # --- source archives ---------------------------------------------------
    @abc.abstractmethod
    def has_source(self, digest: str) -> bool:
        """Whether the source archive with this digest is stored."""

    @abc.abstractmethod
    def put_source(self, digest: str, data: bytes) -> None:
        """Store a source archive (gzip'd tar); idempotent."""

    @abc.abstractmethod
    def get_source(self, digest: str) -> Optional[bytes]:
        """The archive bytes, or None."""

    # --- app services (services/) -----------------------------------------
    @abc.abstractmethod
    def list_services(self, app: Optional[str] = None) -> list:
        """ServiceRecords (all, or one app's), sorted by app and name."""

    @abc.abstractmethod
    def put_service(self, epoch: int, record: "ServiceRecord") -> None:
        """Insert or replace a ServiceRecord (fenced on ``epoch``; ``created_at`` of a known one is kept)."""

    @abc.abstractmethod
    def add_join_token(self, token_id: str, secret_sha256: str, ttl: float, actor: str) -> float:
        """Keep a new one-time join token (its secret only as a sha256), valid ``ttl`` seconds from the
        store's clock; returns when it expires."""

    @abc.abstractmethod
    def redeem_join_token(self, token_id: str, secret_sha256: str, name: str, public_key: str) -> Optional[str]:
        """Use a join token, once, to record ``public_key`` as node ``name``'s key: None when done (the
        token is spent in the same transaction), else the sentence saying why not (unknown, used,
        expired, or the name or key held by a node that was not revoked)."""

    @abc.abstractmethod
    def list_node_keys(self) -> list:
        """Every NodeKeyRecord, revoked ones too, sorted by name."""

    @abc.abstractmethod
    def revoke_node_key(self, name: str, actor: str) -> bool:
        """Revoke node ``name``'s key (a node that never joined is revoked by name); False when no
        node of that name is known at all."""

    @abc.abstractmethod
    def add_service(self, record: "ServiceRecord") -> bool:
        """Record a service made by hand (a restore into a new one); False when ``app/name`` is taken."""

    @abc.abstractmethod
    def delete_service(self, epoch: int, app: str, name: str) -> None:
        """Forget a service (fenced on ``epoch``): after it was dropped."""

    @abc.abstractmethod
    def request_rotation(self, app: str, name: str) -> bool:
        """Ask the leader for a new credential of ``app/name``; False when there is no such service."""

    @abc.abstractmethod
    def add_service_backup(self, record: "ServiceBackupRecord", epoch: Optional[int] = None) -> None:
        """Record a finished backup. One of a schedule's slot (``record.slot``) is the
        leader's, fenced by ``epoch`` (Fenced), and the slot's only one (Conflict)."""

    @abc.abstractmethod
    def list_service_backups(self, app: Optional[str] = None, service: Optional[str] = None) -> list:
        """ServiceBackupRecords (all, one app's or one service's), oldest first."""

    @abc.abstractmethod
    def delete_service_backup(self, backup_id: str) -> None:
        """Forget a backup (its files were removed)."""

    # --- desired instances (leader only, fenced) ---------------------------
    @abc.abstractmethod
    def list_desired(self, app: Optional[str] = None) -> list:
        """Desired instances (all, or one app's), sorted by id."""

    @abc.abstractmethod
    def write_desired(self, epoch: int, upsert: list, delete: list) -> None:
        """Insert/replace DesiredInstances and delete ids, in one fenced transaction."""

    # --- runs (reconciler/cron.py) ---------------------------------------
    @abc.abstractmethod
    def list_runs(self, app: Optional[str] = None, run_id: Optional[str] = None) -> list:
        """RunRecords (all, one app's, or one by id), oldest first."""

    @abc.abstractmethod
    def request_run(self, run: "RunRecord", event: tuple) -> "RunRecord":
        """Record a ``requested`` run and its audit event in one transaction (not fenced: the leader places it)."""

    @abc.abstractmethod
    def report_exit(self, run_id: str, code: int) -> bool:
        """Record an attached run's exit code (not fenced: the leader ends the run); False when it is not active."""

    @abc.abstractmethod
    def write_runs(self, epoch: int, runs: list = (), boot: list = (), stop: list = (), prune: list = (),
                   events: list = ()) -> None:
        """Runs, their desired instances, stops, prunes and events in ONE transaction fenced on
        ``epoch``; a new run for a slot that has one raises Conflict and writes nothing."""

    # --- nodes ---------------------------------------------------------
    @abc.abstractmethod
    def upsert_node(self, name: str, address: str, labels: dict, capacity: dict, seen_at: float) -> None:
        """Record a node's facts as last reported (cordon state is kept)."""

    @abc.abstractmethod
    def upsert_nodes(self, nodes: list) -> None:
        """:meth:`upsert_node` for many ``(name, address, labels, capacity, seen_at)``, in one transaction."""

    @abc.abstractmethod
    def list_nodes(self) -> list:
        """All known nodes, sorted by name."""

    @abc.abstractmethod
    def set_node_cordoned(self, name: str, cordoned: bool, draining: bool = False) -> bool:
        """Cordon (and with ``draining``, drain) or uncordon; False when there is no such node."""

    # --- layer keys and the builders serving layers (corral/store/layerrows.py)
    @abc.abstractmethod
    def builder_seen(self, name: str, url: str) -> None:
        """Record that builder ``name`` serves layers at ``url`` now."""

    @abc.abstractmethod
    def list_builders(self) -> list:
        """BuilderRecords of every builder that has said where it serves, sorted by name."""

    @abc.abstractmethod
    def layer_keys(self, keep: int = 2) -> list:
        """The newest ``keep`` layer-signing keys ``(generation, bytes)``, newest first; made when none."""

    @abc.abstractmethod
    def rotate_layer_key(self) -> int:
        """Add the next layer key; return the newest generation."""

    # --- revisions (leader only, fenced) -------------------------------
    @abc.abstractmethod
    def record_revisions(self, epoch: int, revs: list, keep: int = 10) -> None:
        """Record RevisionRecords (a known number is left alone); keep each app's newest ``keep``."""

    @abc.abstractmethod
    def list_revisions(self, app: str) -> list:
        """The app's recorded RevisionRecords, newest first."""

    # --- builds --------------------------------------------------------
    @abc.abstractmethod
    def enqueue_build(self, key: str, app: str, inputs: dict) -> BuildRecord:
        """Queue a build for ``key`` unless one exists; return the row either way.

        A failed build with the same key stays failed (no retry loop); callers
        that want a retry use :meth:`retry_build`.
        """

    @abc.abstractmethod
    def retry_build(self, key: str) -> None:
        """Put a failed build back to queued."""

    @abc.abstractmethod
    def claim_build(self, worker: str, stale_after: float) -> Optional[BuildRecord]:
        """Take the oldest queued build (or one ``building`` whose worker went
        silent for ``stale_after`` seconds) and mark it building by ``worker``.
        Two builders never claim the same build (SKIP LOCKED / immediate lock)."""

    @abc.abstractmethod
    def heartbeat_build(self, build_id: int, worker: str, progress: Optional[str] = None) -> None:
        """Mark that ``worker`` still works on the build, and what it does now (``progress``, if given)."""

    @abc.abstractmethod
    def finish_build(self, build_id: int, worker: str, *, state: str, image: Optional[str] = None,
                     cache: Optional[str] = None, phases: Optional[dict] = None,
                     error: Optional[str] = None, layers: Optional[list] = None, lock: Optional[str] = None,
                     log_tail: Optional[str] = None) -> None:
        """Record the outcome (``succeeded`` or ``failed``) of a claimed build.

        ``layers`` are the image's layers (``[{"kind", "id", "sha256", "size",
        "url"}, ...]``), ``lock`` the resolved requirement set, ``log_tail``
        the end of the build log when it failed."""

    @abc.abstractmethod
    def set_build_layers(self, build_id: int, layers: list) -> None:
        """Give a succeeded build its ``layers`` once their archives are packed (the build is
        recorded as soon as its layer folders are in place; until then ``layers`` is None)."""

    @abc.abstractmethod
    def get_build(self, key: str) -> Optional[BuildRecord]:
        """The build for these inputs, or None."""

    @abc.abstractmethod
    def list_builds(self, app: Optional[str] = None) -> list:
        """Builds, newest first."""

    @abc.abstractmethod
    def list_build_states(self) -> list:
        """Every build as a :class:`BuildState`: what a leader's pass reads of them (no inputs, lock,
        log tail or phases, which a pass over every app has no use for)."""

    @abc.abstractmethod
    def count_builds(self) -> dict:
        """``{state: number of builds}`` (queued, building, succeeded, failed; only those there are)."""

    # --- events --------------------------------------------------------
    @abc.abstractmethod
    def add_event(self, kind: str, name: str, reason: str, message: str, actor: str) -> None:
        """Append an event."""

    @abc.abstractmethod
    def add_events(self, events: list) -> None:
        """Append many events, each ``(kind, name, reason, message, actor)``, in one transaction."""

    @abc.abstractmethod
    def list_events(self, kind: Optional[str] = None, name: Optional[str] = None, limit: int = 100) -> list:
        """The newest ``limit`` events (optionally of one object), oldest first."""

    @abc.abstractmethod
    def prune_events(self, max_age: float, keep: int) -> int:
        """Delete the events older than ``max_age`` seconds by the store's clock, and all but the
        newest ``keep``; returns how many were deleted."""

    # --- API tokens (corral/store/tokenrows.py) -------------------------
    @abc.abstractmethod
    def add_api_token(self, record: "ApiTokenRecord", actor: str, replace: bool = False) -> "ApiTokenRecord":
        """Store a new named token (its hash, never its secret) and a ``Created`` event, in one transaction;
        return it with the store's time as ``created_at``. A name already taken, revoked or not, is a
        Conflict, unless ``replace``: then that row becomes this one (``Replaced``)."""

    @abc.abstractmethod
    def find_api_token(self, token_hash: str) -> Optional["ApiTokenRecord"]:
        """The token whose secret has sha256 ``token_hash``, revoked and expired ones included, else None."""

    @abc.abstractmethod
    def list_api_tokens(self) -> list:
        """Every named token, revoked ones included, sorted by name."""

    @abc.abstractmethod
    def revoke_api_token(self, name: str, actor: str) -> Optional["ApiTokenRecord"]:
        """Mark the token revoked (once: a second call changes nothing) with an event; return it, None
        when there is no such token."""

    @abc.abstractmethod
    def rotate_api_token(self, name: str, token_hash: str, actor: str) -> Optional["ApiTokenRecord"]:
        """Give a live token a new secret (its old one stops at once), keeping its name, role and expiry;
        None when there is no such token, Conflict when it is revoked."""

    @abc.abstractmethod
    def touch_api_token(self, name: str, when: float) -> None:
        """Record that the token was used at ``when``."""

    @abc.abstractmethod
    def has_api_tokens(self) -> bool:
        """Whether any named token was ever stored (rows are never deleted: once true, always true)."""

    @abc.abstractmethod
    def cluster_secret(self, name: str, make) -> str:
        """The secret ``name`` the store keeps for the cluster; the first call makes it with ``make()``
        (two callers at once agree on one)."""

    # --- leases --------------------------------------------------------
    @abc.abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl: float) -> Optional[Lease]:
        """Take or renew the lease for ``ttl`` seconds, using the store's clock.

        Succeeds when the lease is free, expired, or already held by
        ``holder``. The epoch grows by one whenever the holder changes (never
        on a renewal). Returns the lease when held, None otherwise. Raises
        :class:`NewerSchema`, taking nothing, when the store's schema is newer
        than this corral's: an older reconciler never leads a newer store.
        """

    @abc.abstractmethod
    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (clean shutdown) if ``holder`` holds it."""

    @abc.abstractmethod
    def get_lease(self, name: str) -> Optional[Lease]:
        """The lease row as it stands, or None."""


def jsonable(record: Any) -> dict:
    """A record as a plain dict (for the API)."""
    return dataclasses.asdict(record)
