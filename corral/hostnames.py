"""Host names and path prefixes of routes, in the one canonical form that the spec loader,
the reconcilers and the routers compare. Pure."""
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def normalize_host(raw):
    """The canonical form of a ``Host`` header value (or a route's host), or None when it is
    not a host name: case folded, the port and one trailing dot dropped, a Unicode name
    IDNA-encoded (``bücher.example`` -> ``xn--bcher-kva.example``). Bracketed IPv6
    literals are kept bracketed; dotted IPv4 passes as it is."""
    if not isinstance(raw, str):
        return None
    host = raw.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and not (host[end + 1] == ":" and _PORT.match(host[end + 2:]))):
            return None
        literal = host[1:end].lower()
        return f"[{literal}]" if literal and re.fullmatch(r"[0-9a-f:.]+", literal) else None
    name, colon, port = host.rpartition(":")
    if colon:
        if not _PORT.match(port):
            return None
        host = name
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return None
    if not all(_LABEL.match(label) for label in labels):
        return None
    return host


def normalize_path(path):
    """A route's path prefix in canonical form: starts with ``/``, no trailing ``/`` but for
    the root. None when it does not start with ``/``."""
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    return path.rstrip("/") or "/"
