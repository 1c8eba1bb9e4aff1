"""The API client the CLI uses: bearer token, JSON, fail-over between API URLs.

Where the API is comes from ``CORRAL_API`` (comma-separated URLs) and
``CORRAL_TOKEN``, else from the config file ``corral up`` writes
(``$XDG_CONFIG_HOME/corral/config.yaml``). A URL that does not answer is
skipped for the next; an answer (even an error) ends the search.
"""
import os

import requests
import yaml


class ClientError(Exception):
    """A failure to show the user as one sentence."""


def config_path(environ=os.environ):
    """Where ``corral up`` writes, and the client reads, its config."""
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "corral", "config.yaml")


def write_config(urls, token, environ=os.environ):
    """Write the client config (mode 0600, atomic) and return its path."""
    path = config_path(environ)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump({"api": list(urls), "token": token}, f)
    os.replace(tmp, path)
    return path


def load_config(environ=os.environ):
    """``(urls, token)`` from the environment, else from the config file."""
    urls = [u.strip() for u in environ.get("CORRAL_API", "").split(",") if u.strip()]
    token = environ.get("CORRAL_TOKEN")
    if not urls or not token:
        path = config_path(environ)
        try:
            with open(path, encoding="utf-8") as f:
                conf = yaml.safe_load(f) or {}
        except FileNotFoundError:
            if not urls:
                raise ClientError(f"no cluster configured: set CORRAL_API and CORRAL_TOKEN, or start one with "
                                  f"`corral up` (it writes {path})")
            conf = {}
        except (OSError, yaml.YAMLError) as e:
            raise ClientError(f"cannot read the client config {path}: {e}")
        urls = urls or list(conf.get("api") or [])
        token = token or conf.get("token")
    if not token:
        raise ClientError("no API token: set CORRAL_TOKEN or run `corral up`, which writes it to the config")
    return urls, token


CONNECT_TIMEOUT = 3.0    # seconds: a reconciler's host that drops packets is passed over this soon
FAILOVER_READ = 5.0      # seconds a reading call waits for an answer while another URL remains


class Client:
    """Calls the API, failing over between ``urls``."""

    def __init__(self, urls, token, timeout=30.0, failover_read=FAILOVER_READ):
        if not urls:
            raise ClientError("no API URL configured")
        self.urls = list(urls)
        self.timeout = timeout
        self.failover_read = failover_read
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, path, *, json=None, data=None, params=None, ok=(200, 201, 202, 204),
                idempotent=False):
        """Return ``(status, body)``; raise ClientError with the server's sentence
        for a status outside ``ok``, or when no URL answers. A request that a URL took
        but did not answer is sent to the next one only when doing it twice is the same
        as doing it once: reads, and writes the caller marks ``idempotent``."""
        errors = []
        for i, url in enumerate(self.urls):
            try:
                r = self.session.request(method, url.rstrip("/") + path, json=json, data=data, params=params,
                                         timeout=(CONNECT_TIMEOUT, self._read_timeout(method, i)))
            except requests.ReadTimeout:
                if not (idempotent or method in ("GET", "HEAD")):   # it may have been done: not twice
                    raise ClientError(f"{method} {path}: the API at {url} took the request but did not answer "
                                      f"within {self.timeout:g}s; it may or may not have been done") from None
                errors.append(f"{url}: no answer within {self._read_timeout(method, i):g}s")
                continue
            except requests.RequestException as e:
                errors.append(f"{url}: {_short(e)}")
                continue
            if i:  # remember the one that answered
                self.urls.insert(0, self.urls.pop(i))
            body = None
            if r.content:
                try:
                    body = r.json()
                except ValueError:
                    body = {"error": r.text.strip()[:200]}
            if r.status_code not in ok:
                msg = body.get("error") if isinstance(body, dict) else None
                if not msg and r.status_code == 503:  # a HEAD answer has no body to carry the sentence
                    msg = f"{method} {path} failed: the API at {url} is unavailable (HTTP 503), its store is down or unreachable"
                raise ClientError(msg or f"{method} {path} failed with HTTP {r.status_code}")
            return r.status_code, body
        raise ClientError("no corral API answered (" + "; ".join(errors) + ")")

    def _read_timeout(self, method, i):
        """How long to wait for URL number ``i``'s answer. A frozen reconciler accepts connections
        and never answers: a read (which is safe to ask again) moves on to the next URL soon; a
        write, or the last URL, waits the whole timeout (a write must not be sent twice)."""
        if method in ("GET", "HEAD") and i < len(self.urls) - 1:
            return min(self.timeout, self.failover_read)
        return self.timeout

    def get(self, path, **kw):
        return self.request("GET", path, **kw)[1]


def _short(e):
    text = str(e)
    for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:120]
