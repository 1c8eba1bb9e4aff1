"""What an app's service is called on its server, and the scratch copies verification uses. Pure, but for
:func:`new_password`, which draws from the system's randomness.

App and service names are DNS labels (``[a-z0-9-]``, at most 63), so none holds
``_``, ``:``, ``.`` or a glob character. That makes every name below unique per
(app, service) and keeps the scratch names out of every app's reach:

- PostgreSQL: database and its owner role (NOLOGIN) ``corral_<app>_<service>``,
  a login role per credential generation ``corral_<app>_<service>_u<n>``; scratch
  databases ``corral__scratch_<hex>`` (a double ``_`` no app's name can make);
- Redis: an ACL user per credential generation ``corral.<app>.<service>.<n>``,
  key prefix ``<app>:`` (and channels ``<app>:*``); scratch copies under
  ``_corral:scratch:<hex>:``, which no app's ``~<app>:*`` pattern matches.

PostgreSQL truncates identifiers past 63 bytes; a longer name keeps its first
50 characters and gains ``_`` and 12 hex digits of its sha256, so two long
names still differ.
"""
import hashlib
import re
import secrets
import urllib.parse

PG_IDENT_MAX = 63
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_label(value, what):
    """``value`` when it is a DNS label, else ValueError naming ``what``: a name that becomes part of a
    database, role, user or key pattern must hold no quote, glob or separator."""
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ValueError(f"{what} {value!r} is not a DNS label ([a-z0-9-], at most 63 characters)")
    return value


def _fit(name):
    if len(name) <= PG_IDENT_MAX:
        return name
    return f"{name[:50]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def pg_database(app, service):
    """The PostgreSQL database (and its owning role) of ``app``'s ``service``."""
    return _fit(f"corral_{check_label(app, 'app')}_{check_label(service, 'service')}")


PG_SCRATCH = "corral__scratch_"
SCRATCH_LOCK_CLASS = 0x636f72   # the first key of the advisory locks verifications hold on their scratch databases


def pg_scratch(token=None):
    """A scratch database name for a verification: never one of an app's."""
    return f"{PG_SCRATCH}{token or secrets.token_hex(6)}"


def pg_scratch_lock(name):
    """The advisory lock ``(class, key)`` a verification holds while its scratch database ``name`` lives, or
    None when ``name`` is not a scratch database's. A scratch database nobody holds the lock of was left by a
    verifier that died (its session ended), and may be dropped."""
    try:
        token = int(name[len(PG_SCRATCH):], 16) if name.startswith(PG_SCRATCH) else None
    except ValueError:
        return None
    return None if token is None else (SCRATCH_LOCK_CLASS, token % 2 ** 31)


def redis_user(app, service):
    """The Redis ACL user of ``app``'s ``service``."""
    return f"corral.{check_label(app, 'app')}.{check_label(service, 'service')}"


def redis_prefix(app):
    """The key (and channel) prefix of ``app`` in Redis: ``hello:``."""
    return f"{check_label(app, 'app')}:"


def redis_scratch(token=None):
    """A scratch key prefix for a verification: no app's key pattern matches it."""
    return f"_corral:scratch:{token or secrets.token_hex(6)}:"


def new_password():
    """A fresh random password: 32 URL-safe characters (192 bits), safe in a URL unquoted."""
    return secrets.token_urlsafe(24)


def env_name(service):
    """``<NAME>_URL`` for a service name: ``db`` -> ``DB_URL``, ``page-cache`` -> ``PAGE_CACHE_URL``."""
    return service.upper().replace("-", "_") + "_URL"


def server_address(url):
    """``(host, port)`` of a server URL such as ``postgresql://admin@db1:5432/postgres``."""
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port


def without_password(url):
    """``url`` with any password taken out of it (what is shown and stored as the server's name)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def pg_login(app, service, generation):
    """The login role of credential ``generation``: a member of the owner role, whose sessions act as
    the owner (``SET role``), so that what any login creates belongs to the service, not to the login."""
    return _fit(f"{pg_database(app, service)}_u{int(generation)}")


def redis_login(app, service, generation):
    """The Redis ACL user of credential ``generation``."""
    return f"{redis_user(app, service)}.{int(generation)}"
