"""PostgreSQL for tests: find one, or start a throwaway one.

``postgres_dsn()`` gives every test suite a database of its own for this test
run (dropped at exit):

1. ``CORRAL_TEST_PG`` names a server: used as it is (nothing is created or dropped);
2. else a server answering on 127.0.0.1:5432 (user ``postgres``): a fresh,
   uniquely named database is created on it;
3. else a throwaway cluster is started from ``/usr/lib/postgresql/*/bin`` on
   a free port (as the ``postgres`` user when running as root);
4. else :class:`PostgresUnavailable` says what is missing.

``ThrowawayPostgres`` is a private server for tests that must stop, crash or
restart it.
"""
import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import psycopg2

LOCAL_SERVER = ("127.0.0.1", 5432)
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started for the tests."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _pg_bin() -> str:
    """The bin folder of the newest installed PostgreSQL, or PostgresUnavailable."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return os.path.dirname(on_path)
    raise PostgresUnavailable("no PostgreSQL server answers on 127.0.0.1:5432, CORRAL_TEST_PG is not set, "
                              "and no pg_ctl was found in /usr/lib/postgresql/*/bin or on PATH to start one")


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temporary folder, on a free port.

    ``start()`` creates it on first use; ``stop(mode)`` stops it ("fast", or
    "immediate" to crash it); ``start()`` again brings it back on the same
    port with the same data; ``destroy()`` stops it and removes its files.
    """

    def __init__(self, port: int = None):
        self.bin = _pg_bin()
        self.port = port or free_port()
        self.root = tempfile.mkdtemp(prefix="corral-pg-")
        self.data = os.path.join(self.root, "data")
        self.sockets = os.path.join(self.root, "sock")
        self.log = os.path.join(self.root, "server.log")
        self._user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and there is no 'postgres' user to run a "
                                          "throwaway PostgreSQL as") from None
        os.makedirs(self.sockets)
        if self._user:
            for path in (self.root, self.sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._initialised = False

    @property
    def dsn(self) -> str:
        """The DSN of the ``postgres`` database as user ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}
        done = subprocess.run([os.path.join(self.bin, args[0]), *args[1:]], capture_output=True,
                              text=True, cwd=self.root, **kwargs)
        if done.returncode != 0:
            log = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
            raise PostgresUnavailable(f"{args[0]} failed in {self.root} (exit {done.returncode}): "
                                      f"{done.stderr.strip() or done.stdout.strip()} {log}")

    def start(self) -> "ThrowawayPostgres":
        """Start the server (creating the cluster the first time) and wait until it accepts connections."""
        if not self._initialised:
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
            self._initialised = True
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (as a crash)."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server cleanly and start it again on the same port."""
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the server if it runs, and remove its files."""
        if self._initialised and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self.stop("immediate")
            except PostgresUnavailable:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


_session = {}


def _create_database(admin_dsn: str) -> str:
    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(admin_dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()

    def drop():
        try:
            conn = psycopg2.connect(admin_dsn, connect_timeout=5)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.close()
        except psycopg2.Error:
            pass  # the server is gone; so is the database's point
    atexit.register(drop)
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def postgres_dsn() -> str:
    """A DSN of a PostgreSQL database that this test process may fill and empty at will.

    The same DSN for every call in one process. Raises PostgresUnavailable
    (one sentence) when no server can be found or started.
    """
    if "dsn" in _session:
        return _session["dsn"]
    if os.environ.get("CORRAL_TEST_PG"):
        dsn = os.environ["CORRAL_TEST_PG"]
    elif _answers(*LOCAL_SERVER):
        try:
            dsn = _create_database(ADMIN_DSN)
        except psycopg2.Error as exc:
            raise PostgresUnavailable(f"the PostgreSQL server on 127.0.0.1:5432 answers but refused to "
                                      f"create a test database as user postgres: {exc}".strip()) from exc
    else:
        server = ThrowawayPostgres().start()
        atexit.register(server.destroy)
        dsn = _create_database(server.dsn)
    _session["dsn"] = dsn
    return dsn


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` (a URI or key=value DSN) with its connections' search_path set to ``schema``."""
    if "://" not in dsn:
        return f"{dsn} options='-csearch_path={schema}'"
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}options=-csearch_path%3D{schema}"
