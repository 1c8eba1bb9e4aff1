"""The embedded store: one SQLite file in WAL mode.

Several OS processes (two reconcilers, a builder) and many green threads in
each use the same file at once. Within a process, a store object owns one
connection and a lock (a green lock once eventlet has patched ``threading``)
so one transaction runs at a time; across processes, every write transaction
starts with ``BEGIN IMMEDIATE``, which takes SQLite's write lock up front, so a
transaction never fails halfway for lack of it; readers never wait (WAL).

Waiting for another process's write lock: SQLite's own busy handler sleeps in
C, which would freeze every green thread of the process. So the connection's
``busy_timeout`` is kept short (it only covers rare waits inside a
transaction) and the wait for ``BEGIN IMMEDIATE`` is a retry loop around
``time.sleep``, which is green under eventlet, bounded by ``busy_timeout``
seconds in all.
"""
import os
import sqlite3
import threading
import time

from corral.private import tighten_file
from corral.store.base import StoreError
from corral.store.cursor import Cursor
from corral.store.sql import SQLStore

# Longest time SQLite itself may block the OS thread waiting for a lock.
NATIVE_BUSY_MS = 100
RETRY_PAUSE = 0.005


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def private_db_file(path):
    """Create the database file ``path`` 0600 when missing (SQLite would make it 0644), and take
    group and others' permissions from it and its ``-wal`` and ``-shm`` when they have some."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    for name in (path, path + "-wal", path + "-shm"):
        tighten_file(name)


class SQLiteStore(SQLStore):
    """The Store in a SQLite file at ``path`` (its folder is created when missing, 0700).

    The file is the whole cluster's state (every app's env, secrets included): it is
    created 0600 before SQLite opens it, and a looser one is tightened, with its ``-wal`` and
    ``-shm`` (which SQLite creates with the file's own mode).

    ``busy_timeout``: seconds a write waits for another process's write lock
    before it fails with StoreError.
    """

    def __init__(self, path: str, busy_timeout: float = 5.0):
        if not path:
            raise ValueError("the SQLite store needs a file path, as in sqlite:///var/lib/corral/corral.db")
        self.path = path
        self.busy_timeout = busy_timeout
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        private_db_file(path)
        self._lock = threading.Lock()
        self._conn = None

    def __repr__(self):
        return f"SQLiteStore({self.path!r})"

    # --- connection ----------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=NATIVE_BUSY_MS / 1000)
            try:
                conn.execute(f"PRAGMA busy_timeout = {NATIVE_BUSY_MS}")
                self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _retry_busy(self, step):
        """Run ``step`` until it stops failing with "database is locked", or time runs out."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(RETRY_PAUSE)  # green under eventlet: other green threads run

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop_connection()

    # --- what SQLStore needs ------------------------------------------------
    def _run(self, work, write: bool, commit: bool = True):
        with self._lock:
            try:
                conn = self._connection()
                begin = "BEGIN IMMEDIATE" if write else "BEGIN"
                self._retry_busy(lambda: conn.execute(begin))
                result = work(Cursor(conn.cursor(), "?"))
                conn.execute("COMMIT" if commit else "ROLLBACK")
                return result
            except sqlite3.OperationalError as exc:
                self._rollback()
                self._drop_connection()
                raise StoreError(f"store unreachable: {exc} (SQLite file {self.path})") from exc
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"store refused the operation: {exc} (SQLite file {self.path})") from exc
            except BaseException:
                self._rollback()
                raise

    def _now(self, cur: Cursor) -> float:
        # Every writer holds the database lock while it reads this, so times
        # written by successive transactions come from one machine's clock.
        return time.time()

    def _lock_for_migration(self, cur: Cursor) -> None:
        # migrate() runs as a write transaction: BEGIN IMMEDIATE already
        # excludes every other writer, other processes included.
        return None

    def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        with self._lock:
            self._drop_connection()
