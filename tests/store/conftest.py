"""Fixtures for the store suite: every test runs against SQLite and PostgreSQL.

``store`` is a fresh, migrated, empty store: a new SQLite file, or a new
PostgreSQL schema in the test run's database. ``open_twin`` opens a second
store object (its own connections) on the same data, as a second daemon would.
"""
import os
import sys
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from corral.store.postgres import PostgresStore  # noqa: E402
from corral.store.sqlite import SQLiteStore  # noqa: E402
from tests.pg import PostgresUnavailable, postgres_dsn  # noqa: E402
from tests.support import need, scratch_schema  # noqa: E402


@pytest.fixture(scope="session")
def pg_dsn():
    """The test run's PostgreSQL database (without one, the test needs ``postgresql``: skipped,
    or failed under CORRAL_REQUIRE)."""
    try:
        return postgres_dsn()
    except PostgresUnavailable as exc:
        need("postgresql", str(exc))


@pytest.fixture
def pg_schema_dsn(pg_dsn):
    """A DSN whose connections see only a new, empty schema (dropped afterwards)."""
    with scratch_schema(pg_dsn) as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    """Which backend this run of the test uses."""
    return request.param


@pytest.fixture
def store_dsn(request, backend, tmp_path):
    """Where the test's store lives: a SQLite path, or a PostgreSQL DSN."""
    if backend == "sqlite":
        return str(tmp_path / "state" / "corral.db")
    return request.getfixturevalue("pg_schema_dsn")


@pytest.fixture
def open_twin(backend, store_dsn):
    """A factory of extra store objects on the test's data (each closed at the end)."""
    opened = []

    def open_one(**options):
        store = SQLiteStore(store_dsn, **options) if backend == "sqlite" else PostgresStore(store_dsn, **options)
        opened.append(store)
        return store
    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_twin):
    """A fresh, migrated, empty store of the backend under test."""
    store = open_twin()
    store.migrate()
    return store
