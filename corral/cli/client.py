"""The API client the CLI uses: bearer token, JSON, fail-over between API URLs.

Where the API is comes from ``CORRAL_API`` (comma-separated URLs) and
``CORRAL_TOKEN``, else from the config file ``corral up`` writes
(``$XDG_CONFIG_HOME/corral/config.yaml``). A URL that does not answer is
skipped for the next; an answer (even an error) ends the search.

Requests go out through the standard library's ``http.client``, imported
when the first one is sent, not through ``requests``: a command's whole run
is about as long as importing ``requests`` was (bench/cli.py has the
figures), and one JSON request per connection needs nothing it adds. The
config is written as JSON, which is YAML too, so that reading it needs no
YAML parser either; a config written by hand in YAML is still read.
"""
import os


class ClientError(Exception):
    """A failure to show the user as one sentence."""


def config_path(environ=os.environ):
    """Where ``corral up`` writes, and the client reads, its config."""
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "corral", "config.yaml")


def write_config(urls, token, environ=os.environ, tokens=None, builders=()):
    """Write the client config (mode 0600, atomic) and return its path. The text is JSON,
    a YAML document that :func:`load_config` reads without importing a YAML parser. ``tokens``
    (``{role: token}``), when given, are kept under ``tokens`` for the dashboard's users;
    ``builders``: the builders' URLs, which `corral version` asks too."""
    import json
    from corral import private
    path = config_path(environ)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = {"api": list(urls), "token": token, **({"tokens": tokens} if tokens else {}),
            **({"builders": list(builders)} if builders else {})}
    return private.write_private(path, json.dumps(body, indent=2) + "\n")


def _parse_config(text):
    """The config mapping of ``text``: JSON when it is (what `corral up` writes), else YAML."""
    import json
    try:
        return json.loads(text)
    except ValueError:
        import yaml
        return yaml.safe_load(text)


def config_file_tokens(environ=os.environ):
    """``{role: token}`` the config file keeps under ``tokens`` (FileNotFoundError when there is no file)."""
    with open(config_path(environ), encoding="utf-8") as f:
        conf = _parse_config(f.read()) or {}
    tokens = conf.get("tokens") if isinstance(conf, dict) else None
    return dict(tokens) if isinstance(tokens, dict) else {}


def api_ca(environ=os.environ):
    """The CA file pinned for ``https://`` API URLs: ``CORRAL_CA``, else the config's ``ca``, else None
    (the system's CAs)."""
    if environ.get("CORRAL_CA"):
        return environ["CORRAL_CA"]
    try:
        with open(config_path(environ), encoding="utf-8") as f:
            conf = _parse_config(f.read())
    except Exception:   # no config, or one that does not parse: load_full_config says so
        return None
    ca = conf.get("ca") if isinstance(conf, dict) else None
    return ca if isinstance(ca, str) and ca else None


def load_config(environ=os.environ):
    """``(urls, token)`` from the environment, else from the config file."""
    urls, token, _ = load_full_config(environ)
    return urls, token


def load_full_config(environ=os.environ):
    """``(urls, token, builders)``: the API URLs and token from the environment, else from the config
    file, and the builders' URLs (``CORRAL_BUILDERS``, comma separated, else the file's ``builders``)."""
    urls = [u.strip() for u in environ.get("CORRAL_API", "").split(",") if u.strip()]
    token = environ.get("CORRAL_TOKEN")
    builders = [u.strip() for u in environ.get("CORRAL_BUILDERS", "").split(",") if u.strip()]
    if not urls or not token:
        path = config_path(environ)
        try:
            with open(path, encoding="utf-8") as f:
                conf = _parse_config(f.read()) or {}
        except FileNotFoundError:
            if not urls:
                raise ClientError(f"no cluster configured: set CORRAL_API and CORRAL_TOKEN, or start one with "
                                  f"`corral up` (it writes {path})")
            conf = {}
        except OSError as e:
            raise ClientError(f"cannot read the client config {path}: {e}")
        except Exception as e:   # the YAML parser's errors, without importing it to name them
            if type(e).__module__.split(".")[0] != "yaml":
                raise
            raise ClientError(f"cannot read the client config {path}: {e}")
        if not isinstance(conf, dict):
            raise ClientError(f"cannot read the client config {path}: it is not a mapping of api and token")
        urls = urls or list(conf.get("api") or [])
        token = token or conf.get("token")
        builders = builders or list(conf.get("builders") or [])
    if not token:
        raise ClientError("no API token: set CORRAL_TOKEN or run `corral up`, which writes it to the config")
    return urls, token, builders


CONNECT_TIMEOUT = 3.0    # seconds: a reconciler's host that drops packets is passed over this soon
FAILOVER_READ = 6.0      # seconds a reading call waits for an answer while another URL remains: longer than
                         # a reconciler waits for an unreachable store (5 s), so that its 503 comes back


class Unreachable(Exception):
    """No connection to a URL could be made (so nothing was sent): the next URL may be tried."""


def connect(url, connect_timeout, read_timeout):
    """``(connection, base path)`` of an open ``http.client`` connection to API ``url`` whose socket
    waits ``read_timeout`` seconds for each read; :class:`Unreachable` when it cannot be opened
    within ``connect_timeout`` (refused, no route, unknown name, not an http(s) URL)."""
    import http.client
    from urllib.parse import urlsplit
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise Unreachable(f"not a URL: {e}") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise Unreachable("not an http:// or https:// URL")
    if u.scheme == "https":
        from corral.apitls import client_context
        try:
            context = client_context(api_ca())
        except (OSError, ValueError) as e:   # ssl.SSLError is an OSError
            raise ClientError(f"cannot read the API's CA file {api_ca()}: {_short(e)}") from None
        conn = http.client.HTTPSConnection(u.hostname, port, timeout=connect_timeout, context=context)
    else:
        conn = http.client.HTTPConnection(u.hostname, port, timeout=connect_timeout)
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        raise Unreachable(_short(e)) from None
    conn.sock.settimeout(read_timeout)
    return conn, u.path.rstrip("/")


def target(base, path, params):
    """The request target: ``base`` + ``path`` with ``params`` (None values left out) as its query."""
    if params:
        from urllib.parse import urlencode
        query = urlencode([(k, v) for k, v in params.items() if v is not None])
        if query:
            path += ("&" if "?" in path else "?") + query
    return base + path


def encode_body(json_body, data):
    """``(bytes or None, extra headers)`` of a request's JSON document or raw ``data``."""
    if json_body is not None:
        import json
        return json.dumps(json_body, allow_nan=False).encode("utf-8"), {"Content-Type": "application/json"}
    return data, {}


class Client:
    """Calls the API, failing over between ``urls``."""

    def __init__(self, urls, token, timeout=30.0, failover_read=FAILOVER_READ):
        if not urls:
            raise ClientError("no API URL configured")
        self.urls = list(urls)
        self.timeout = timeout
        self.failover_read = failover_read
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": "corral-cli",
                        "Accept": "application/json"}

    def request(self, method, path, *, json=None, data=None, params=None, ok=(200, 201, 202, 204),
                idempotent=False):
        """Return ``(status, body)``; raise ClientError with the server's sentence
        for a status outside ``ok``, or when no URL answers. A request that a URL took
        but did not answer is sent to the next one only when doing it twice is the same
        as doing it once: reads, and writes the caller marks ``idempotent``."""
        import http.client
        payload, extra = encode_body(json, data)
        headers = dict(self.headers, **extra)
        errors = []
        for i, url in enumerate(self.urls):
            read_timeout = self._read_timeout(method, i)
            try:
                conn, base = connect(url, CONNECT_TIMEOUT, read_timeout)
            except Unreachable as e:
                errors.append(f"{url}: {e}")
                continue
            try:
                conn.request(method, target(base, path, params), body=payload, headers=headers)
                r = conn.getresponse()
                content = r.read()
            except TimeoutError:
                if not (idempotent or method in ("GET", "HEAD")):   # it may have been done: not twice
                    raise ClientError(f"{method} {path}: the API at {url} took the request but did not answer "
                                      f"within {self.timeout:g}s; it may or may not have been done") from None
                errors.append(f"{url}: no answer within {read_timeout:g}s")
                continue
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{url}: {_short(e)}")
                continue
            finally:
                conn.close()
            if i:  # remember the one that answered
                self.urls.insert(0, self.urls.pop(i))
            return r.status, _answer(method, path, url, r.status, content, ok)
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


def _answer(method, path, url, status, content, ok):
    """The JSON body of an answer with ``status`` in ``ok``; else ClientError with the API's sentence
    (its body's ``error``), or one naming the status when the body has none."""
    body = None
    if content:
        import json
        try:
            body = json.loads(content)
        except ValueError:
            body = {"error": content.decode("utf-8", "replace").strip()[:200]}
    if status not in ok:
        msg = body.get("error") if isinstance(body, dict) else None
        if not msg and status == 503:  # a HEAD answer has no body to carry the sentence
            msg = f"{method} {path} failed: the API at {url} is unavailable (HTTP 503), its store is down or unreachable"
        raise ClientError(msg or f"{method} {path} failed with HTTP {status}")
    return body


def _short(e):
    """What a connection error says, short: its known cause in a few lower-case words (``connection
    refused``, ``timed out``, ...), else the start of its text, else its type's name."""
    text = str(e) or type(e).__name__
    for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:120]
