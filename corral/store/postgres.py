"""The shared store: PostgreSQL through psycopg2, for clusters of several machines.

Connections: a small pool of our own (psycopg2.pool is built on OS-thread
locks that it takes at import time). The pool's lock and semaphore are made
from ``threading`` when the store is created, so they are green once eventlet
has patched the process, and plain thread primitives otherwise. psycopg2
itself is cooperative after a bare ``eventlet.monkey_patch()`` (docs/STACK.md).

Timeouts: ``statement_timeout`` and ``connect_timeout`` are connection
options. A query that runs too long is cancelled by the server, which leaves
the connection usable after a rollback; queries are never wrapped in
``eventlet.Timeout``, which kills the connection.

Recovery: a connection that fails (server restarted, network gone) is
dropped along with every idle one, since they share its fate. When the very
first statement of a transaction fails on a connection taken from the pool,
nothing reached the server, so the transaction is tried once more on a fresh
connection: the first call after the server comes back succeeds. Only when it
failed at once (within :data:`RETRY_WITHIN`: a connection the server closed):
one that failed by timing out (a link gone) would only time out again, and a
call during an outage would wait twice. Otherwise the failure surfaces as
``StoreError("store unreachable: ...")`` and the next call reconnects.

Outages: once a call has found the server unreachable by waiting out a
timeout (a link gone silent: longer than :data:`RETRY_WITHIN`; a refused
connection fails at once and costs nothing to try again), and until a call
succeeds, calls fail at once with the same sentence, but for one at a time
that tries the server again (and waits out its timeouts) once ``retry_after``
seconds have passed since the last failure. So during an outage an API request
is answered 503 in a moment instead of after the connect or network timeout,
and a reconciler's many callers do not all wait at once, while the server is
still tried continually (the leader's lease renewal, the next request) and
found the moment it is back.
"""
import threading
import time
import zlib

import psycopg2
import psycopg2.extensions

from corral.store.base import StoreError
from corral.store.cursor import Cursor
from corral.store.sql import SQLStore

MIGRATION_LOCK = zlib.crc32(b"corral.store.migrate")
RETRY_WITHIN = 1.0   # seconds: a first statement that failed sooner is tried again on a fresh connection


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore(SQLStore):
    """The Store in the PostgreSQL database named by ``dsn`` (a libpq URI or key=value string).

    ``pool_size``: most connections open at once (callers beyond it wait).
    ``statement_timeout`` and ``connect_timeout``: seconds.
    """

    types = {"serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION",
             "bool": "BOOLEAN"}
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    skip_locked = " SKIP LOCKED"
    snapshot_statement = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    table_exists_sql = ("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                        "AND table_name = ?")

    def __init__(self, dsn: str, pool_size: int = 4, statement_timeout: float = 10.0,
                 connect_timeout: float = 5.0, retry_after: float = 1.0):
        try:
            params = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.ProgrammingError as exc:
            raise ValueError(f"PostgreSQL DSN {dsn!r} is not valid: {_first_line(exc)}") from None
        options = params.get("options", "")
        params["options"] = f"{options} -c statement_timeout={int(statement_timeout * 1000)}".strip()
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        params.setdefault("application_name", "corral")
        # statement_timeout is the server's clock: it cannot end a wait on a link
        # that went silent (cut cable, partition, no RST). The kernel can: unacked
        # data aborts the connection after tcp_user_timeout, and keepalives find a
        # dead idle connection, so a call fails with one sentence instead of hanging.
        # (Unacked only: a long query whose bytes the server acknowledged is unaffected.)
        params.setdefault("tcp_user_timeout", str(int(connect_timeout * 1000)))
        params.setdefault("keepalives", "1")
        params.setdefault("keepalives_idle", "5")
        params.setdefault("keepalives_interval", "2")
        params.setdefault("keepalives_count", "3")
        self._params = params
        self._where = (f"PostgreSQL at {params.get('host', 'local socket')}:{params.get('port', 5432)}"
                       f"/{params.get('dbname', '')}")
        self._idle = []
        self._idle_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self._unreachable = None            # the sentence of the last outage, until a call succeeds
        self._failed_at = 0.0               # when a call last found the server unreachable (monotonic)
        self._retry_after = retry_after
        self._probing = threading.Lock()    # held by the one call that tries the server during an outage

    def __repr__(self):
        return f"PostgresStore({self._where})"

    # --- the pool --------------------------------------------------------
    def _checkout(self, fresh: bool):
        """A connection and whether it came from the pool (True) or was just opened."""
        if not fresh:
            with self._idle_lock:
                if self._idle:
                    return self._idle.pop(), True
        return psycopg2.connect(**self._params), False

    def _checkin(self, conn) -> None:
        with self._idle_lock:
            if not self._closed and not conn.closed:
                self._idle.append(conn)
                return
        conn.close()

    def _discard(self, conn) -> None:
        """Close ``conn`` and every idle connection: they have probably lost the server too."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for each in [conn, *idle]:
            try:
                each.close()
            except psycopg2.Error:
                pass

    def _rollback_and_checkin(self, conn) -> None:
        try:
            conn.rollback()
        except psycopg2.Error:
            self._discard(conn)
        else:
            self._checkin(conn)

    # --- what SQLStore needs ------------------------------------------------
    def _run(self, work, write: bool, commit: bool = True):
        """:meth:`_attempt`, or StoreError at once during an outage while another call tries the server
        (the module docstring's Outages)."""
        probing = self._unreachable is not None
        if probing and (time.monotonic() - self._failed_at < self._retry_after
                        or not self._probing.acquire(blocking=False)):
            raise StoreError(f"{self._unreachable}; not tried again yet (one call at a time tries it, at most "
                             f"every {self._retry_after:g}s)")
        began = time.monotonic()
        try:
            result = self._attempt(work, write, commit)
        except StoreError as exc:
            slow = time.monotonic() - began >= RETRY_WITHIN
            self._unreachable = str(exc) if slow and str(exc).startswith("store unreachable") else None
            self._failed_at = time.monotonic()
            raise
        else:
            self._unreachable = None
            return result
        finally:
            if probing:
                self._probing.release()

    def _attempt(self, work, write, commit):
        """Run ``work`` once, or twice when the first try failed on a stale pooled connection at once."""
        for attempt in (1, 2):
            with self._slots:
                try:
                    conn, reused = self._checkout(fresh=attempt > 1)
                except psycopg2.Error as exc:
                    raise StoreError(f"store unreachable: {_first_line(exc)} ({self._where})") from exc
                cur, began = None, time.monotonic()
                try:
                    cur = Cursor(conn.cursor(), "%s")
                    result = work(cur)
                    if commit:
                        conn.commit()
                    else:
                        conn.rollback()
                except psycopg2.extensions.QueryCanceledError as exc:
                    self._rollback_and_checkin(conn)
                    raise StoreError(f"store query cancelled after statement_timeout: "
                                     f"{_first_line(exc)} ({self._where})") from exc
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    self._discard(conn)
                    if (reused and (cur is None or cur.executed == 0) and attempt == 1
                            and time.monotonic() - began < RETRY_WITHIN):
                        continue  # nothing reached the server, at once (a stale connection): try once on a new one
                    raise StoreError(f"store unreachable: {_first_line(exc)} ({self._where})") from exc
                except psycopg2.Error as exc:
                    self._rollback_and_checkin(conn)
                    raise StoreError(f"store refused the operation: {_first_line(exc)} "
                                     f"({self._where})") from exc
                except BaseException:
                    self._rollback_and_checkin(conn)
                    raise
                self._checkin(conn)
                return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _now(self, cur: Cursor) -> float:
        cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
        return cur.fetchone()[0]

    def _lock_for_migration(self, cur: Cursor) -> None:
        # Held until the migration transaction ends; a second daemon waits here
        # and then finds the schema already at the current version.
        cur.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def close(self) -> None:
        """Close idle connections now, and busy ones as they come back."""
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
