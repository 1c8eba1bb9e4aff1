"""The services settings: servers as admin URLs, passwords only from files; what `corral up` says it found."""
import pytest

from corral.cli.upservices import services_line, with_services
from corral.settings import ServiceServers, load_services, load_timings


def write(tmp_path, text):
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return str(path)


def test_servers_and_their_password_files(tmp_path):
    secret = tmp_path / "pg-password"
    secret.write_text("s3cret\n")
    path = write(tmp_path, f"heartbeat: 0.2\nservices:\n  postgresql: postgresql://admin@db1:5432/postgres\n"
                           f"  postgresql_password_file: {secret}\n  redis: redis://r1:6379\n  backup_dir: /b\n")
    servers = load_services(path)
    assert servers.types() == {"postgresql", "redis"}
    assert servers.password("postgresql") == "s3cret" and servers.password("redis") is None
    assert load_timings(path).heartbeat == 0.2, "the timings read past the services mapping"
    assert load_services(None) == ServiceServers() and ServiceServers().types() == frozenset()


@pytest.mark.parametrize("text, said", [
    ("services:\n  mysql: mysql://x\n", "unknown setting services.mysql"),
    ("services:\n  postgresql: redis://x:6379\n", "services.postgresql must be a postgresql:// URL"),
    ("services:\n  redis: redis://:pw@x:6379\n", "services.redis carries a password; put it in "
                                                 "services.redis_password_file instead"),
    ("services: [postgresql]\n", "services must be a mapping"),
], ids=["unknown", "scheme", "password-in-url", "not-a-mapping"])
def test_bad_services_settings_are_one_sentence_naming_the_file(tmp_path, text, said):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"^{path}: .*") as e:
        load_services(path)
    assert said in str(e.value)


def test_up_uses_what_it_found_unless_the_settings_name_servers():
    found = {"postgresql": "postgresql://postgres@127.0.0.1:5432/postgres"}
    assert with_services({"heartbeat": 0.2}, found, "/d/backups") == {
        "heartbeat": 0.2, "services": {**found, "backup_dir": "/d/backups"}}
    mine = {"services": {"redis": "redis://r1:6379", "backup_dir": "/mine"}}
    assert with_services(mine, found, "/d/backups") == mine


def test_up_says_in_one_line_what_it_found():
    assert services_line({"postgresql": "postgresql://postgres@127.0.0.1:5432/postgres", "redis": "redis://127.0.0.1:6379",
                          "backup_dir": "/d/b"}, "found on this machine") == (
        "corral up: app services on PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 (found on this machine); "
        "backups in /d/b")
    assert "apps that ask for services will be refused" in services_line({"backup_dir": "/d/b"}, "x")
    said = services_line({"redis": "redis://127.0.0.1:6379", "backup_dir": "/d/b"}, "found on this machine",
                         open_to_all=True)
    assert said == ("corral up: app services on Redis at 127.0.0.1:6379 (found on this machine); they let any local "
                    "process in without a password, so apps' data is kept apart from other apps' credentials but not "
                    "from this machine's users; backups in /d/b")


def test_up_refuses_settings_that_are_not_yaml_in_one_sentence(tmp_path):
    from corral.cli.upservices import prepare
    path = write(tmp_path, "heartbeat: [0.2\n")
    with pytest.raises(ValueError, match=f"^{path}: not a YAML mapping of settings"):
        prepare(path, str(tmp_path))
