"""PostgreSQL databases for apps, on psycopg2 and the server's own pg_dump/pg_restore. A thin shell.

Per service: an owner role (NOLOGIN) that owns the database, ``CONNECT`` revoked
from ``PUBLIC``; and one login role per credential generation, a member of the
owner whose sessions ``SET role`` to it, so a rotation adds a login, rolls the
instances and drops the old login while the data keeps its owner.

A backup is ``pg_dump -Fc`` taken inside a repeatable-read transaction whose
snapshot was exported first, and the per-table row counts and content checksums
are read in that same snapshot: they describe exactly what was dumped. The
verification restores the file into a scratch database and reads them again.
A content checksum is the sum over rows of 60 bits of ``md5(row::text)``: order
free, and read in one pass without holding the table in memory.

What a backup holds was written by the app, and is hostile: a function in an
index expression or a default runs while it is restored. Every restore, the
verification's into its scratch database too, runs as the service's own owner
role (``pg_restore --role``), never as the admin, so such a function has the
app's rights and no more; admin sessions read with ``search_path`` set to
``pg_catalog``, so no function or operator the app made is picked in their place.
"""
import contextlib
import glob
import os
import shutil
import subprocess
import urllib.parse

import psycopg2
from psycopg2 import sql

from services.base import Provisioner, ServiceError, Verification
from services.names import PG_SCRATCH, pg_database, pg_login, pg_scratch, pg_scratch_lock, server_address

TABLES = """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
            ORDER BY 1, 2"""
TABLE_FACTS = "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text FROM {} t"


def pg_tool(name):
    """The path of ``pg_dump``/``pg_restore``: the newest in /usr/lib/postgresql/*/bin, else on PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise ServiceError(f"{name} is not installed (package postgresql-client): backups of PostgreSQL need it")
    return path


def compare_tables(expected, got):
    """``(ok, reason)``: whether the per-table facts ``got`` (name -> [rows, checksum]) of a restored copy
    equal ``expected``, what was dumped; the reason names the first difference. Pure."""
    for name in sorted(set(expected) | set(got)):
        if name not in got:
            return False, f"table {name} is in the backup's facts but was not restored"
        if name not in expected:
            return False, f"table {name} was restored but is not in the backup's facts"
        (rows_e, sum_e), (rows_g, sum_g) = expected[name], got[name]
        if rows_e != rows_g:
            return False, f"table {name}: {rows_e} rows were dumped, {rows_g} restored"
        if sum_e != sum_g:
            return False, f"table {name}: the content checksum of the restored rows differs from the dumped ones"
    rows = sum(r for r, _ in expected.values())
    return True, f"restored into a scratch database: {len(expected)} tables, {rows} rows, counts and checksums agree"


def answers(url, timeout=2):
    """Whether a PostgreSQL server takes an admin connection at ``url``."""
    try:
        psycopg2.connect(url, connect_timeout=timeout).close()
        return True
    except psycopg2.Error:
        return False


class PostgresProvisioner(Provisioner):
    """Databases on one PostgreSQL server reached as an admin that may create roles and databases."""

    type = "postgresql"

    def __init__(self, url, password=None, timeout=300):
        self.admin_url, self.password, self.timeout = url, password, timeout
        self.host, self.port = server_address(url)
        self.port = self.port or 5432

    # -- connections ------------------------------------------------------------------------------
    def _connect(self, dbname=None):
        kwargs = {"password": self.password} if self.password else {}
        if dbname:
            kwargs["dbname"] = dbname
        try:
            conn = psycopg2.connect(self.admin_url, connect_timeout=10, options=(
                f"-c statement_timeout={int(self.timeout * 1000)} -c search_path=pg_catalog"), **kwargs)
        except psycopg2.Error as e:
            raise ServiceError(f"PostgreSQL at {self.host}:{self.port} did not take the admin connection: "
                               f"{str(e).strip().splitlines()[0]}") from None
        conn.autocommit = True
        return conn

    @contextlib.contextmanager
    def _cursor(self, dbname=None):
        """An autocommit cursor of a new admin connection; a refusal is one ServiceError sentence."""
        conn = self._connect(dbname)
        try:
            with conn.cursor() as cur:
                yield cur
        except psycopg2.Error as e:
            raise ServiceError(f"PostgreSQL at {self.host}:{self.port} refused: {str(e).strip().splitlines()[0]}") \
                from None
        finally:
            conn.close()

    def _run(self, statements, dbname=None):
        """Run ``statements`` ((statement, args...) each) on one connection; the rows of the last that had any."""
        rows = None
        with self._cursor(dbname) as cur:
            for stmt, *args in statements:
                cur.execute(stmt, *args)
                if cur.description is not None:
                    rows = cur.fetchall()
        return rows

    def _query(self, query, args=(), dbname=None):
        return self._run([(query, args)], dbname)

    def _tool_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def _dsn(self, dbname):
        """The admin URL pointed at ``dbname``, without the password (that goes in PGPASSWORD)."""
        parts = urllib.parse.urlsplit(self.admin_url)
        user = parts.username or "postgres"
        return f"postgresql://{urllib.parse.quote(user)}@{self.host}:{self.port}/{urllib.parse.quote(dbname)}"

    # -- provisioning ---------------------------------------------------------------------------------
    @staticmethod
    def _exists(cur, catalog, name):
        column = "rolname" if catalog == "pg_roles" else "datname"
        cur.execute(sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(sql.Identifier(catalog), sql.Identifier(column)),
                    (name,))
        return cur.fetchone() is not None

    def ensure(self, service, credential):
        db, login = pg_database(service.app, service.name), pg_login(service.app, service.name, credential.generation)
        owner, user = sql.Identifier(db), sql.Identifier(login)
        with self._cursor() as cur:
            if not self._exists(cur, "pg_roles", db):
                cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(owner))
            verb = "ALTER" if self._exists(cur, "pg_roles", login) else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(user, sql.Literal(credential.password)))
            cur.execute(sql.SQL("GRANT {} TO {}").format(owner, user))
            cur.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(user, sql.Literal(db)))
            if not self._exists(cur, "pg_database", db):
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(owner, owner))
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(owner))
            cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(owner, owner))

    def exists(self, service, credential):
        db, login = pg_database(service.app, service.name), pg_login(service.app, service.name, credential.generation)
        with self._cursor() as cur:
            return self._exists(cur, "pg_database", db) and self._exists(cur, "pg_roles", login)

    def url(self, service, credential):
        db, login = pg_database(service.app, service.name), pg_login(service.app, service.name, credential.generation)
        return f"postgresql://{login}:{credential.password}@{self.host}:{self.port}/{db}"

    @staticmethod
    def _drop_login(cur, login):
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))

    def retire(self, service, generation):
        with self._cursor() as cur:
            self._drop_login(cur, pg_login(service.app, service.name, generation))

    def drop(self, service):
        db = pg_database(service.app, service.name)
        with self._cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            cur.execute("""SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                           WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = %s)""", (db,))
            for (login,) in cur.fetchall():
                if login.startswith(db + "_u"):
                    self._drop_login(cur, login)
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db)))

    def size(self, service):
        rows = self._query("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s",
                           (pg_database(service.app, service.name),))
        return int(rows[0][0]) if rows else None

    def version(self):
        return self._query("SHOW server_version")[0][0]

    # -- backups ------------------------------------------------------------------------------------
    @staticmethod
    def _table_facts(cur):
        cur.execute(TABLES)
        facts = {}
        for schema, table in cur.fetchall():
            cur.execute(sql.SQL(TABLE_FACTS).format(sql.Identifier(schema, table)))
            rows, checksum = cur.fetchone()
            facts[f"{schema}.{table}"] = [int(rows), checksum]
        return facts

    def _tool(self, argv, stdout=subprocess.DEVNULL, what="pg_restore"):
        try:
            done = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, env=self._tool_env(),
                                  timeout=self.timeout * 4, check=False)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{what} did not finish within {self.timeout * 4:.0f} s") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["(no output)"]
            raise ServiceError(f"{what} failed (exit {done.returncode}): {lines[-1]}")

    def backup(self, service, out):
        db = pg_database(service.app, service.name)
        conn = self._connect(db)
        try:
            conn.autocommit = False
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
                snapshot, server_version = cur.fetchone()
                tables = self._table_facts(cur)
                self._tool([pg_tool("pg_dump"), "-Fc", "--no-password", f"--snapshot={snapshot}",
                            "-d", self._dsn(db)], stdout=out, what="pg_dump")
            conn.rollback()
        except psycopg2.Error as e:
            raise ServiceError(f"reading {db} for its backup failed: {str(e).strip().splitlines()[0]}") from None
        finally:
            conn.close()
        return {"tables": tables, "server_version": server_version, "tool_version": self._tool_version()}

    @staticmethod
    def _tool_version():
        done = subprocess.run([pg_tool("pg_dump"), "--version"], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def _restore_into(self, path, db, *extra):
        self._tool([pg_tool("pg_restore"), "--no-password", "--no-owner", "--no-privileges", "--exit-on-error",
                    *extra, "-d", self._dsn(db), path])

    def verify(self, service, path, facts):
        """Restore ``path`` into a scratch database and compare its tables with ``facts``. While the scratch
        database lives, an admin session holds its advisory lock; first, scratch databases whose lock nobody
        holds (their verifier was killed) are dropped."""
        scratch = pg_scratch()
        with self._cursor() as guard:
            self.sweep_scratch(guard)
            guard.execute("SELECT pg_advisory_lock(%s, %s)", pg_scratch_lock(scratch))
            return self._verify_in(scratch, service, path, facts)

    @staticmethod
    def sweep_scratch(cur):
        """Drop the scratch databases on the server that no live verification holds the lock of; their names."""
        cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (PG_SCRATCH,))
        gone = []
        for name in [r[0] for r in cur.fetchall()]:
            key = pg_scratch_lock(name)
            if key is None:
                continue
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
            if cur.fetchone()[0]:
                try:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                    gone.append(name)
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        return gone

    def _verify_in(self, scratch, service, path, facts):
        owner = pg_database(service.app, service.name)
        self._run([(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(scratch), sql.Identifier(owner)),)])
        try:
            self._restore_into(path, scratch, "--single-transaction", f"--role={owner}")
            conn = self._connect(scratch)
            try:
                with conn.cursor() as cur:
                    got = self._table_facts(cur)
            finally:
                conn.close()
            ok, reason = compare_tables(facts.get("tables", {}), got)
            return Verification(ok, reason, {"tables": got})
        except ServiceError as e:
            return Verification(False, f"restoring it into a scratch database failed: {e}")
        finally:
            self._run([(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)),)])

    def restore(self, path, service):
        db = pg_database(service.app, service.name)
        self._restore_into(path, db, "--clean", "--if-exists", "--single-transaction", f"--role={db}")
