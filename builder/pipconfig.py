"""The operator's package index settings, as pip reads them, for every install engine.

The builder installs from whatever index the operator configured for pip
(``pip.conf`` files and ``PIP_*`` variables). uv does not read pip's
configuration, so the builder asks pip once (``pip config list``) and
translates what matters::

    index-url            -> --index-url
    extra-index-url      -> --extra-index-url (each), and --index-strategy unsafe-best-match:
                            pip picks the best version across all indexes, uv by
                            default takes a package from the first index holding it
    find-links           -> --find-links (each)
    constraint           -> --constraint (each; used when resolving)
    no-index             -> --no-index
    cert                 -> SSL_CERT_FILE in uv's environment
    default-timeout      -> UV_HTTP_TIMEOUT

Sections apply in pip's order of precedence: ``global``, then ``install``,
then the environment (``:env:``), a later one replacing an earlier one's
value of the same key. The functions here besides :func:`read_pip_config`
are purely computational.
"""
import dataclasses
import os
import subprocess
import sys

_SECTIONS = ("global", "download", "install", ":env:")   # lowest precedence first
_LISTS = ("extra-index-url", "find-links", "constraint")


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """Where packages come from, as the operator configured pip."""

    index_url: str = ""
    extra_index_urls: tuple = ()
    find_links: tuple = ()
    constraints: tuple = ()
    no_index: bool = False
    cert: str = ""
    timeout: str = ""


def parse_pip_config(text):
    """IndexSettings from the output of ``pip config list`` (lines ``section.key='value'``)."""
    chosen = {}
    ranked = []
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep or "." not in name:
            continue
        section, _, key = name.rpartition(".")
        section = section or ":env:"
        if section not in _SECTIONS:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        ranked.append((_SECTIONS.index(section), key.replace("_", "-"), value))
    for _, key, value in sorted(ranked, key=lambda r: r[0]):
        chosen[key] = value
    lists = {k: tuple(chosen.get(k, "").split()) for k in _LISTS}
    return IndexSettings(
        index_url=chosen.get("index-url", ""), extra_index_urls=lists["extra-index-url"],
        find_links=lists["find-links"], constraints=lists["constraint"],
        no_index=chosen.get("no-index", "").lower() in ("1", "true", "yes", "on"),
        cert=chosen.get("cert", ""), timeout=chosen.get("default-timeout", ""))


def uv_index_args(settings, *, resolving):
    """uv's command-line options for ``settings``; constraints only when ``resolving``."""
    args = []
    if settings.no_index:
        args.append("--no-index")
    if settings.index_url:
        args += ["--index-url", settings.index_url]
    for url in settings.extra_index_urls:
        args += ["--extra-index-url", url]
    if settings.extra_index_urls:
        args += ["--index-strategy", "unsafe-best-match"]
    for link in settings.find_links:
        args += ["--find-links", link]
    if resolving:
        for path in settings.constraints:
            args += ["--constraint", path]
    return args


def uv_environment(settings, base):
    """uv's environment: ``base`` (a dict) with the certificate and timeout of ``settings``."""
    env = dict(base)
    if settings.cert:
        env["SSL_CERT_FILE"] = settings.cert
    if settings.timeout:
        env["UV_HTTP_TIMEOUT"] = settings.timeout
    return env


def pip_environment(settings, base):
    """pip's environment: ``base`` (a dict) with ``settings`` as ``PIP_*`` variables, and no
    configuration file of its own (a build's pip reads what the builder read, nothing else)."""
    env = dict(base, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    pairs = {"PIP_INDEX_URL": settings.index_url, "PIP_EXTRA_INDEX_URL": " ".join(settings.extra_index_urls),
             "PIP_FIND_LINKS": " ".join(settings.find_links), "PIP_CONSTRAINT": " ".join(settings.constraints),
             "PIP_CERT": settings.cert, "PIP_DEFAULT_TIMEOUT": settings.timeout,
             "PIP_NO_INDEX": "1" if settings.no_index else ""}
    env.update({k: v for k, v in pairs.items() if v})
    return env


def read_pip_config(python=sys.executable, timeout=60.0):
    """The operator's IndexSettings, as ``python -m pip config list`` reports them (empty when pip is absent)."""
    try:
        done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return IndexSettings()
    return parse_pip_config(done.stdout) if done.returncode == 0 else IndexSettings()
