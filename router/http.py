"""HTTP/1.1 message heads as the router reads and rewrites them. Pure: bytes in, values out.

Strict on purpose: what two HTTP parsers could read two ways is refused with
400 before any byte reaches an app (request smuggling lives in those gaps):
a bare LF, a header line folded onto the previous one, white space before a
colon, ``Content-Length`` beside ``Transfer-Encoding``, two different
lengths, a length that is not digits, a transfer coding other than
``chunked``, ``Transfer-Encoding`` in HTTP/1.0, two ``Host`` headers.
"""
import dataclasses
import functools
import re

from corral.hostnames import normalize_host

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")
# One well-formed header line: a token at the start of a line, a colon, a value without control
# characters (but tab), CRLF. A head whose every line is one (as many matches as CRLFs) is read
# in one C-level pass; any other is read again line by line (_header_lines), to say which
# line is wrong. The value's white space around it is stripped after the match, not matched
# apart: a ``[ \t]*`` before the value, which matches spaces too, made a line of n spaces and a
# control character cost n*n/2 steps to refuse (30,000 spaces: 8 s of a worker's only thread).
_HEADER_FIELD = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\x00-\x08\x0a-\x1f\x7f]*)\r\n", re.M)
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_normal_host = functools.lru_cache(maxsize=4096)(normalize_host)   # Host values repeat: the same few
_DIGITS = re.compile(rb"^[0-9]{1,18}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Connection-scoped headers: never passed on (RFC 9110 7.6.1); Upgrade is put back when asked.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
# Headers the router sets itself (a client's copy is dropped unless it is a trusted proxy).
FORWARDING = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id",
                        b"forwarded", b"x-real-ip"})
# What backend_head leaves out of a client's headers (a trusted proxy's forwarding headers are
# kept, but for the two the router always sets), and client_head out of a backend's.
_NOT_FORWARDED = HOP_BY_HOP | {b"expect"} | FORWARDING
_NOT_FORWARDED_TRUSTED = HOP_BY_HOP | {b"expect", b"x-forwarded-for", b"x-request-id"}
_NOT_ANSWERED_CHUNKED = HOP_BY_HOP | {b"content-length"}
_NOT_ANSWERED_SWITCHING = HOP_BY_HOP - {b"connection", b"upgrade"}
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"})   # known tokens


class BadMessage(Exception):
    """A head the router will not pass on: ``status`` (400, 414, 431, 501, 505) and one sentence."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a request head may hold."""

    request_line: int = 8192
    header_bytes: int = 32768
    header_count: int = 100


@dataclasses.dataclass(slots=True)
class Head:
    """A parsed request or response head. ``headers`` is ``[(lower name, raw name, value)]``;
    ``length`` is the body's ``Content-Length`` (None: none given); ``chunked``: the body
    is chunked; ``connection``: the tokens of its ``Connection`` headers (as :meth:`tokens`)."""

    start: tuple
    version: str
    headers: list
    length: int = None
    chunked: bool = False
    connection: frozenset = frozenset()

    def get(self, name):
        """The value of header ``name`` (lower-case bytes), or None; the first when repeated."""
        for lower, _, value in self.headers:
            if lower == name:
                return value
        return None

    def tokens(self, name):
        """The comma-separated, lower-cased tokens of every ``name`` header, as a set of bytes."""
        out = set()
        for lower, _, value in self.headers:
            if lower == name:
                out.update(t.strip().lower() for t in value.split(b","))
        return out


def _headers(block, limits, request):
    """``[(lower name, name, value)]`` of the header lines ``block`` (each ending in CRLF)."""
    fields = _HEADER_FIELD.findall(block)
    if len(fields) == block.count(b"\r\n"):
        headers = [(name.lower(), name, value.strip(b" \t")) for name, value in fields]
    else:
        headers = _header_lines(block.split(b"\r\n")[:-1])
    if request and len(headers) > limits.header_count:
        raise BadMessage(431, f"the request has more than {limits.header_count} header lines")
    return headers


def _header_lines(lines):
    """The headers of ``lines`` one by one, refusing the first line that is not well formed."""
    headers = []
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise BadMessage(400, "a header line is folded onto the previous one (obsolete line folding)")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise BadMessage(400, f"a header line has no valid name: {line[:40]!r}")
        value = value.strip(b" \t")
        if _VALUE_BAD.search(value):
            raise BadMessage(400, f"header {name.decode()} holds a control character")
        headers.append((name.lower(), name, value))
    return headers


def _framing(head, request):
    """Set ``head``'s body framing (``length``, ``chunked``) and ``connection`` tokens from its
    headers, refusing what two parsers could read two ways."""
    found = [(name, value) for name, _, value in head.headers if name in _FRAMING]
    if not found:
        return
    lengths, codings, connection = set(), [], []
    for name, value in found:
        if name == b"content-length":
            lengths.add(value)
        elif name == b"transfer-encoding":
            codings.append(value)
        else:
            connection += value.lower().split(b",")
    if connection:
        head.connection = frozenset([t.strip() for t in connection])
    if codings:
        if request and lengths:
            raise BadMessage(400, "the request has both Content-Length and Transfer-Encoding")
        if request and head.version == "HTTP/1.0":
            raise BadMessage(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) > 1 or codings[0].strip().lower() != b"chunked":
            if request:
                raise BadMessage(501, f"transfer coding {b', '.join(codings).decode('latin-1')!r} is not "
                                      "supported (only chunked)")
        head.chunked = True
        return
    if lengths:
        length = lengths.pop()
        if lengths or not _DIGITS.match(length):
            raise BadMessage(400, "Content-Length is not one number of digits")
        head.length = int(length)


def split_head(data, limits):
    """``(start line, header block)`` of the head ``data`` (bytes up to, not including, the blank
    line; the block's lines each end in CRLF), refusing a bare LF or CR and the limits' sizes."""
    if len(data) > limits.header_bytes:
        raise BadMessage(431, f"the request head is larger than {limits.header_bytes} bytes")
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        raise BadMessage(400, "a line of the head ends in a bare LF or CR")
    start, _, rest = data.partition(b"\r\n")
    if len(start) > limits.request_line:
        raise BadMessage(414, f"the request line is longer than {limits.request_line} bytes")
    return start, rest + b"\r\n" if rest else b""


def parse_request(data, limits=Limits()):
    """The :class:`Head` of a request whose head is ``data``; ``start`` is ``(method, target)``
    as str. Raises :class:`BadMessage`."""
    start, block = split_head(data, limits)
    parts = start.split(b" ")
    if len(parts) != 3 or not (parts[0] in _METHODS or _TOKEN.match(parts[0])) or not parts[1]:
        raise BadMessage(400, "the request line is not METHOD TARGET VERSION")
    if _TARGET_BAD.search(parts[1]):
        raise BadMessage(400, "the request target holds a space or a control character")
    version = parts[2].decode("latin-1")
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        if version.startswith("HTTP/"):
            raise BadMessage(505, f"{version} is not spoken here (HTTP/1.1 and 1.0 are)")
        raise BadMessage(400, "the request line is not METHOD TARGET VERSION")
    head = Head((parts[0].decode("latin-1"), parts[1].decode("latin-1")), version, _headers(block, limits, True))
    _framing(head, True)
    return head


def parse_response(data):
    """The :class:`Head` of a backend's response; ``start`` is ``(status int, reason)``."""
    start, _, rest = data.partition(b"\r\n")
    parts = start.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not _DIGITS.match(parts[1]) or len(parts[1]) != 3:
        raise BadMessage(502, "the backend's answer is not an HTTP/1.x status line")
    head = Head((int(parts[1]), parts[2].decode("latin-1") if len(parts) > 2 else ""),
                parts[0].decode("latin-1"), _headers(rest + b"\r\n" if rest else b"", None, False))
    _framing(head, False)
    return head


def request_host(head):
    """The normalised host a request is for (from an absolute-form target, else ``Host``) and
    its origin-form target, as ``(host, target)``. Raises :class:`BadMessage` (400)."""
    method, target = head.start
    hosts = [v for n, _, v in head.headers if n == b"host"]
    if len(hosts) > 1:
        raise BadMessage(400, "the request has more than one Host header")
    raw = hosts[0].decode("latin-1") if hosts else None
    lowered = target[:8].lower()
    if lowered.startswith("http://") or lowered.startswith("https://"):
        rest = target.split("://", 1)[1]
        authority, slash, path = rest.partition("/")
        raw, target = authority, "/" + path
    if raw is None:
        if head.version == "HTTP/1.1":
            raise BadMessage(400, "the request has no Host header")
        raw = ""
    host = _normal_host(raw)
    if host is None or "@" in raw:
        raise BadMessage(400, f"Host {raw[:60]!r} is not a host name")
    if host.startswith("*"):
        raise BadMessage(400, "Host may not be a wildcard")
    if method == "CONNECT":
        raise BadMessage(405, "CONNECT is not served here")
    return host, target


def wants_upgrade(head):
    """The ``Upgrade`` value when the request asks to switch protocols (``Connection:
    upgrade`` and an ``Upgrade`` header), else None. ``h2c`` is never passed on: a tunnel of
    HTTP/2 cleartext would carry requests the router never reads (h2c smuggling)."""
    if b"upgrade" not in head.connection:
        return None
    upgrade = head.get(b"upgrade")
    if upgrade and upgrade.strip().lower() != b"h2c":
        return upgrade
    return None


def keep_alive(head):
    """True when the client's connection may carry another request after this one."""
    return head.version == "HTTP/1.1" and b"close" not in head.connection


def request_id(head, trusted):
    """The client's ``X-Request-Id`` when it comes from a trusted proxy and looks like an id, else None."""
    if not trusted:
        return None
    value = head.get(b"x-request-id")
    if value is None:
        return None
    value = value.decode("latin-1")
    return value if _REQUEST_ID.match(value) else None


def forwarded_for(head, peer, trusted):
    """The ``X-Forwarded-For`` to send: the trusted proxy's list with ``peer`` appended, or
    ``peer`` alone (a client's own list is a forgery until a trusted proxy vouches for it)."""
    if trusted:
        prior = [v.decode("latin-1") for n, _, v in head.headers if n == b"x-forwarded-for"]
        if prior:
            return ", ".join(prior + [peer])
    return peer


def backend_head(head, target, *, host_header, peer, proto, rid, trusted, upgrade=None, body_chunked=False):
    """The bytes of the request head sent to a backend: hop-by-hop headers dropped (the body
    is re-framed: ``Transfer-Encoding: chunked`` when ``body_chunked``), forwarding headers
    set (a client's kept only when ``trusted``), ``Upgrade`` kept when switching protocols."""
    method = head.start[0]
    drop_forwarding = not trusted
    # Headers the client calls hop-by-hop (its Connection tokens) are not passed on either.
    drop = _NOT_FORWARDED if drop_forwarding else _NOT_FORWARDED_TRUSTED
    if head.connection:
        drop = drop | head.connection
    out = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    for lower, name, value in head.headers:
        if lower not in drop:
            out.append(name + b": " + value + b"\r\n")
    xff = forwarded_for(head, peer, trusted)
    out.append(f"X-Forwarded-For: {xff}\r\nX-Request-Id: {rid}\r\n".encode("latin-1"))
    if drop_forwarding or head.get(b"x-forwarded-proto") is None:
        out.append(f"X-Forwarded-Proto: {proto}\r\n".encode("latin-1"))
    if drop_forwarding or head.get(b"x-forwarded-host") is None:
        out.append(b"X-Forwarded-Host: " + host_header + b"\r\n")
    if body_chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        out.append(b"Connection: Upgrade\r\nUpgrade: " + upgrade + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def client_head(head, *, chunked, close, rid):
    """The bytes of the response head sent to the client: the backend's status and headers
    without hop-by-hop ones, its framing (``chunked``: re-chunked), ``Connection: close`` when
    the router will close, and the request's id."""
    status, reason = head.start
    switching = status == 101
    drop = _NOT_ANSWERED_SWITCHING if switching else _NOT_ANSWERED_CHUNKED if chunked else HOP_BY_HOP
    out = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")]
    for lower, name, value in head.headers:
        if lower not in drop:
            out.append(name + b": " + value + b"\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if close and not switching:
        out.append(b"Connection: close\r\n")
    if head.get(b"x-request-id") is None:
        out.append(f"X-Request-Id: {rid}\r\n".encode("latin-1"))
    out.append(b"\r\n")
    return b"".join(out)


def has_no_body(method, status):
    """True when a response to ``method`` with ``status`` has no body whatever its headers say."""
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def own_page(status, reason, sentence, *, close, retry_after=None):
    """The bytes of an answer the router makes itself (404 unknown host, 503, 502, 504, 400...):
    a short plain-text page that says what happened."""
    body = f"{status} {reason}: {sentence}\n".encode("utf-8")
    extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    conn = "Connection: close\r\n" if close else ""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}{conn}Server: corral-router\r\n\r\n").encode("latin-1") + body
