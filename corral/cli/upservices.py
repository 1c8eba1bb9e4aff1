"""`corral up` and app services: use the PostgreSQL and Redis of this machine when they answer.

The daemons read the servers from the settings file's ``services`` mapping.
Unless the user's settings name them, `up` looks for a PostgreSQL on
127.0.0.1:5432 (as ``postgres``) and a Redis on 127.0.0.1:6379, writes the user's
settings plus what it found (and a backup folder in the data dir) to a
settings file of its own, 0600, and says in one line what it found.
"""
import os
import urllib.parse

import yaml

from corral.private import write_private

LOCAL_POSTGRESQL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379"


def with_services(user_settings, found, backup_dir):
    """The settings mapping the daemons get: the user's, with ``services`` made of ``found`` (type -> URL)
    and ``backup_dir`` when the user named none. Pure."""
    services = dict(user_settings.get("services") or {})
    if not any(k in services for k in ("postgresql", "redis")):
        services.update(found)
    services.setdefault("backup_dir", backup_dir)
    return {**user_settings, "services": services}


def services_line(services, source, open_to_all=False):
    """The one line `up` prints about app services. ``open_to_all``: the servers were found taking an admin
    without a password, so any process of this machine may log in as any app's user. Pure."""
    have = [f"{label} at {urllib.parse.urlsplit(services[kind]).netloc.rpartition('@')[2]}" for kind, label in
            (("postgresql", "PostgreSQL"), ("redis", "Redis")) if services.get(kind)]
    if not have:
        return ("corral up: no PostgreSQL or Redis answers on 127.0.0.1 (5432, 6379): apps that ask for "
                "services will be refused")
    caveat = ("; they let any local process in without a password, so apps' data is kept apart from other apps' "
              "credentials but not from this machine's users" if open_to_all else "")
    return f"corral up: app services on {' and '.join(have)} ({source}){caveat}; backups in {services['backup_dir']}"


def prepare(settings_path, data_dir):
    """``(path of the settings file for the daemons, the line to print)``."""
    user = {}
    if settings_path:
        with open(settings_path, encoding="utf-8") as f:
            try:
                user = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{settings_path}: not a YAML mapping of settings ({str(e).splitlines()[0]})") \
                    from None
        if not isinstance(user, dict):
            raise ValueError(f"{settings_path}: settings must be a mapping of name to seconds")
    given = any(k in (user.get("services") or {}) for k in ("postgresql", "redis"))
    found = {}
    if not given:
        from services import postgresql, redis
        if postgresql.answers(LOCAL_POSTGRESQL):
            found["postgresql"] = LOCAL_POSTGRESQL
        if redis.answers(LOCAL_REDIS):
            found["redis"] = LOCAL_REDIS
    merged = with_services(user, found, os.path.join(data_dir, "backups"))
    path = os.path.join(data_dir, "settings.yaml")
    write_private(path, yaml.safe_dump(merged, sort_keys=True))
    return path, services_line(merged["services"], f"from {settings_path}" if given else "found on this machine",
                               open_to_all=bool(found))
