"""tests/pg.py: the PostgreSQL every suite uses, found or started."""
import glob
import os
import subprocess
import sys

import psycopg2
import pytest

from tests import pg
from tests.support import need

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_without_a_local_server_a_throwaway_cluster_is_started_and_removed():
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        need("postgresql", "no PostgreSQL binaries in /usr/lib/postgresql/*/bin to start a throwaway server from")
    script = (
        "import psycopg2, tests.pg as pg\n"
        f"pg.LOCAL_SERVER = ('127.0.0.1', {pg.free_port()})  # nothing answers there\n"
        "dsn = pg.postgres_dsn()\n"
        "conn = psycopg2.connect(dsn); cur = conn.cursor(); cur.execute('SELECT current_database()')\n"
        "print(dsn, cur.fetchone()[0]); conn.close()\n")
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_TEST_PG"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    dsn, database = done.stdout.split()
    assert database.startswith("corral_test_") and ":5432/" not in dsn
    with pytest.raises(psycopg2.OperationalError):  # stopped at exit
        psycopg2.connect(dsn, connect_timeout=2)


def test_postgres_dsn_is_one_database_per_process(pg_dsn):
    assert pg.postgres_dsn() == pg_dsn


def test_with_search_path_for_both_dsn_forms():
    assert pg.with_search_path("postgresql://u@h:1/db", "s") == "postgresql://u@h:1/db?options=-csearch_path%3Ds"
    assert pg.with_search_path("postgresql://u@h/db?sslmode=disable", "s").endswith("&options=-csearch_path%3Ds")
    assert pg.with_search_path("host=h dbname=db", "s") == "host=h dbname=db options='-csearch_path=s'"
