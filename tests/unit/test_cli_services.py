"""What the services verbs print: names of services, VERIFIED, and what a delete keeps."""
import pytest

from corral.cli.client import ClientError
from corral.cli.commands import retention_lines
from corral.cli.output import render
from corral.cli.services import split_service, verified_text

BACKUP = {"id": "hello-db-20261203T081500Z", "app": "hello", "service": "db", "type": "postgresql", "size": 2 << 20,
          "verified": False, "reason": "table public.t: 2 rows were dumped, 1 restored", "created_at": None,
          "seconds": {"backup": 0.4, "verify": 0.9}}


def test_split_service():
    assert split_service("hello/db") == ("hello", "db")
    for bad in ("hello", "hello/", "/db", "a/b/c", None):
        with pytest.raises(ClientError, match="name a service as APP/NAME"):
            split_service(bad)


def test_verified_shows_the_reason_of_a_no():
    assert verified_text({**BACKUP, "verified": True}) == "yes"
    assert verified_text(BACKUP) == "no (table public.t: 2 rows were dumped, 1 restored)"
    table = render("backups", [BACKUP], "table").splitlines()
    assert table[0].split() == ["ID", "SERVICE", "TYPE", "SIZE", "VERIFIED", "AGE"]
    assert "no (table public.t: 2 rows were dumped, 1 restored)" in table[1]


def test_services_table_shows_the_server_without_its_user():
    row = {"app": "hello", "name": "db", "type": "postgresql", "server": "postgresql://admin@db1:5432/postgres",
           "state": "ready", "size": 8 << 20, "onDelete": "Retain", "lastBackup": {**BACKUP, "verified": True}}
    line = render("services", [row], "table").splitlines()[1].split()
    assert line == ["hello", "db", "postgresql", "db1:5432", "ready", "8.0Mi", BACKUP["id"], "(verified", "yes)"]


def test_delete_says_what_becomes_of_the_services():
    assert retention_lines("hello", []) == ""
    said = retention_lines("hello", [{"name": "db", "type": "postgresql", "onDelete": "Retain"},
                                     {"name": "cache", "type": "redis", "onDelete": "Delete"}])
    assert said.splitlines() == [
        "app/hello: its services db (postgresql) and their backups are kept (onDelete: Retain); "
        "see `corral get services hello`",
        "app/hello: its services cache (redis) are dropped after a final verified backup (onDelete: Delete); "
        "the backups are kept"]
