"""Provisioners on the test run's PostgreSQL and Redis, and apps named so that runs side by side never meet.

Each fixture's services are dropped afterwards (databases, roles, ACL users, keys).
"""
import contextlib
import secrets

import pytest

from services.base import Credential, Service
from services.postgresql import PostgresProvisioner
from services.redis import RedisProvisioner
from tests.pg import PostgresUnavailable, postgres_dsn
from tests.redisserver import redis_url
from tests.support import need


def unique_app(stem="app"):
    """An app name no other test run uses: ``<stem>-<hex>``."""
    return f"{stem}-{secrets.token_hex(4)}"


def pg_provisioner():
    try:
        return PostgresProvisioner(postgres_dsn())
    except PostgresUnavailable as e:
        need("postgresql", str(e))


@contextlib.contextmanager
def ensured():
    """make(type, app=None, name=None) -> (provisioner, Service, Credential), ensured; all dropped after."""
    made = []

    def make(kind, app=None, name=None):
        prov = pg_provisioner() if kind == "postgresql" else RedisProvisioner(redis_url())
        service = Service(app or unique_app(), name or ("db" if kind == "postgresql" else "cache"), kind)
        cred = Credential(1, secrets.token_urlsafe(12))
        prov.ensure(service, cred)
        made.append((prov, service))
        return prov, service, cred

    try:
        yield make
    finally:
        for prov, service in made:
            prov.drop(service)


@pytest.fixture
def provisioned():
    """:func:`ensured` for one test."""
    with ensured() as make:
        yield make
