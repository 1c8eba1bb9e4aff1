"""HTTP/1.1 message heads as the router reads and rewrites them. Pure: bytes in, values out.

Strict on purpose: what two HTTP parsers could read two ways is refused with
400 before any byte reaches an app (request smuggling lives in those gaps):
a bare LF, a header line folded onto the previous one, white space before a
colon, ``Content-Length`` beside ``Transfer-Encoding``, two different
lengths, a length that is not digits, a transfer coding other than
``chunked``, ``Transfer-Encoding`` in HTTP/1.0, two ``Host`` headers.

A head is read in a few C-level passes over its bytes, not line by line: two
check that every header line is well formed, one picks out the few headers
the router reads or drops (:data:`NOTED`); every other header passes on as
the bytes that came. The line-by-line reading (:func:`_header_lines`) is kept
to say which line is wrong, and for a client that names more headers in
``Connection`` than the router knows.
"""
import dataclasses
import functools
import re

from corral.hostnames import normalize_host

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"   # a character of a token (a method, a header name)
_TOKEN = re.compile(rb"^" + _TCHAR + rb"+$")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")
# A head's header lines are checked in two passes, each linear in the head's length: no control
# character but tab (CR and LF only as a line's CRLF), and every line start a name and a colon.
# (A pattern that could match the same white space two ways, before a value and in it, once made
# a line of n spaces and a control character cost n*n/2 steps: 8 s of a worker for 30,000.)
_CONTROLS = bytes(c for c in range(32) if c not in b"\t\r\n") + b"\x7f"
_NOT_A_FIELD = re.compile(rb"\n(?!" + _TCHAR + rb"+:)")
# A request line whose every part is well formed (any other is read again, to say which part is wrong).
_REQUEST_LINE = re.compile(_TCHAR + rb"+ [^\x00-\x20\x7f]+ HTTP/1\.[01]")
_normal_host = functools.lru_cache(maxsize=4096)(normalize_host)   # Host values repeat: the same few
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
# The headers whose values the router reads, and those it may leave out: a head notes these
# (Head.fields), and passes every other one on untouched.
NOTED = HOP_BY_HOP | FORWARDING | {b"host", b"content-length", b"expect", b"x-forwarded-proto",
                                   b"x-forwarded-host"}


def _names_pattern(names):
    """An alternation of ``names`` grouped by first letter (each line start tries one group)."""
    groups = {}
    for name in sorted(names):
        groups.setdefault(name[:1], []).append(re.escape(name[1:]))
    return b"|".join(re.escape(first) + b"(?:" + b"|".join(rests) + b")" for first, rests in groups.items())


# A noted header's line in a head's block (every line starts after a CRLF, a literal the search
# skips to): its name and its value (white space not stripped).
_NOTED_FIELD = re.compile(rb"\r\n(" + _names_pattern(NOTED) + rb"):([^\r]*)", re.I)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


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
    """A parsed request or response head. ``block``: its header lines as they came, each after
    a CRLF (``b"\\r\\nHost: a\\r\\nAccept: */*"``: the head's bytes after its start line),
    each checked well formed; ``fields``: ``{lower name: [values]}`` of its :data:`NOTED`
    headers; ``length``: the body's ``Content-Length`` (None: none given); ``chunked``: the
    body is chunked; ``connection``: the lower-cased tokens of its ``Connection`` headers."""

    start: tuple
    version: str
    block: bytes
    fields: dict
    length: int = None
    chunked: bool = False
    connection: frozenset = frozenset()

    def get(self, name):
        """The value of header ``name`` (lower-case bytes), or None; the first when repeated."""
        if name in NOTED:
            values = self.fields.get(name)
            return values[0] if values else None
        for lower, _, value in self.headers:
            if lower == name:
                return value
        return None

    @property
    def headers(self):
        """Every header, ``[(lower name, raw name, value)]``, read line by line."""
        return _header_lines(self.block.split(b"\r\n")[1:])


def _fields(block):
    """``{lower name: [values]}`` of the :data:`NOTED` headers of ``block`` (header lines, each
    after a CRLF, and no other CR or LF), once every line of it is known to be well formed."""
    if len(block.translate(None, _CONTROLS)) != len(block) or _NOT_A_FIELD.search(block):
        _header_lines(block.split(b"\r\n")[1:])   # raises, naming the line
        raise BadMessage(400, "a header line is not well formed")
    fields = {}
    for name, value in _NOTED_FIELD.findall(block):
        value = value.strip(b" \t")
        name = name.lower()
        if name in fields:
            fields[name].append(value)
        else:
            fields[name] = [value]
    return fields


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
    fields = head.fields
    connection = fields.get(b"connection")
    if connection:
        head.connection = frozenset().union(*map(_tokens, connection)) if len(connection) > 1 else \
            _tokens(connection[0])
    lengths, codings = fields.get(b"content-length"), fields.get(b"transfer-encoding")
    if codings:
        if request and lengths:
            raise BadMessage(400, "the request has both Content-Length and Transfer-Encoding")
        if request and head.version == "HTTP/1.0":
            raise BadMessage(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) > 1 or codings[0].lower() != b"chunked":
            if request:
                raise BadMessage(501, f"transfer coding {b', '.join(codings).decode('latin-1')!r} is not "
                                      "supported (only chunked)")
        head.chunked = True
        return
    if lengths:
        length = lengths[0]
        if (len(lengths) > 1 and len(set(lengths)) > 1) or not length.isdigit() or len(length) > 18:
            raise BadMessage(400, "Content-Length is not one number of digits")
        head.length = int(length)


@functools.lru_cache(maxsize=256)
def _tokens(value):
    """The lower-cased tokens of one ``Connection`` value (the same few values come again and again)."""
    return frozenset([t.strip() for t in value.lower().split(b",")])


def _check_line_ends(data):
    """Refuse a head with a CR or an LF that is not part of a CRLF."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        raise BadMessage(400, "a line of the head ends in a bare LF or CR")


def split_head(data, limits):
    """``(start line, header block)`` of the head ``data`` (bytes up to, not including, the blank
    line; the block is the rest, its lines each after a CRLF), refusing a bare LF or CR and the
    limits' sizes."""
    if len(data) > limits.header_bytes:
        raise BadMessage(431, f"the request head is larger than {limits.header_bytes} bytes")
    _check_line_ends(data)
    end = data.find(b"\r\n")
    start, block = (data, b"") if end < 0 else (data[:end], data[end:])
    if len(start) > limits.request_line:
        raise BadMessage(414, f"the request line is longer than {limits.request_line} bytes")
    return start, block


def parse_request(data, limits=Limits()):
    """The :class:`Head` of a request whose head is ``data``; ``start`` is ``(method, target)``
    as str. Raises :class:`BadMessage`."""
    start, block = split_head(data, limits)
    if not _REQUEST_LINE.fullmatch(start):
        _refuse_request_line(start)
    method, target, version = start.decode("latin-1").split(" ")
    fields = _fields(block)
    if block.count(b"\r\n") > limits.header_count:
        raise BadMessage(431, f"the request has more than {limits.header_count} header lines")
    head = Head((method, target), version, block, fields)
    _framing(head, True)
    return head


def _refuse_request_line(start):
    """Raise the :class:`BadMessage` that says what is wrong with the request line ``start``."""
    parts = start.split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise BadMessage(400, "the request line is not METHOD TARGET VERSION")
    if _TARGET_BAD.search(parts[1]):
        raise BadMessage(400, "the request target holds a space or a control character")
    version = parts[2].decode("latin-1")
    if version.startswith("HTTP/"):
        raise BadMessage(505, f"{version} is not spoken here (HTTP/1.1 and 1.0 are)")
    raise BadMessage(400, "the request line is not METHOD TARGET VERSION")


def parse_response(data):
    """The :class:`Head` of a backend's response; ``start`` is ``(status int, reason)``."""
    _check_line_ends(data)
    end = data.find(b"\r\n")
    start, block = (data, b"") if end < 0 else (data[:end], data[end:])
    parts = start.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise BadMessage(502, "the backend's answer is not an HTTP/1.x status line")
    head = Head((int(parts[1]), parts[2].decode("latin-1") if len(parts) > 2 else ""), parts[0].decode("latin-1"),
                block, _fields(block))
    _framing(head, False)
    return head


def request_host(head):
    """The normalised host a request is for (from an absolute-form target, else ``Host``) and
    its origin-form target, as ``(host, target)``. Raises :class:`BadMessage` (400)."""
    method, target = head.start
    hosts = head.fields.get(b"host", ())
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
        prior = [v.decode("latin-1") for v in head.fields.get(b"x-forwarded-for", ())]
        if prior:
            return ", ".join(prior + [peer])
    return peer


def backend_head(head, target, *, host_header, peer, proto, rid, trusted, upgrade=None, body_chunked=False):
    """The bytes of the request head sent to a backend: hop-by-hop headers dropped (the body
    is re-framed: ``Transfer-Encoding: chunked`` when ``body_chunked``), forwarding headers
    set (a client's kept only when ``trusted``), ``Upgrade`` kept when switching protocols."""
    drop = _NOT_FORWARDED_TRUSTED if trusted else _NOT_FORWARDED
    # Headers the client calls hop-by-hop (its Connection tokens) are not passed on either.
    named = head.connection - drop if head.connection else None
    out = [f"{head.start[0]} {target} HTTP/1.1".encode("latin-1"), _lines_without(head, drop, named),
           f"\r\nX-Forwarded-For: {forwarded_for(head, peer, trusted)}\r\nX-Request-Id: {rid}".encode("latin-1")]
    fields = head.fields
    if not trusted or b"x-forwarded-proto" not in fields:
        out.append(f"\r\nX-Forwarded-Proto: {proto}".encode("latin-1"))
    if not trusted or b"x-forwarded-host" not in fields:
        out.append(b"\r\nX-Forwarded-Host: " + host_header)
    if body_chunked:
        out.append(b"\r\nTransfer-Encoding: chunked")
    if upgrade is not None:
        out.append(b"\r\nConnection: Upgrade\r\nUpgrade: " + upgrade)
    out.append(b"\r\n\r\n")
    return b"".join(out)


def client_head(head, *, chunked, close, rid):
    """The bytes of the response head sent to the client: the backend's status and headers
    without hop-by-hop ones, its framing (``chunked``: re-chunked), ``Connection: close`` when
    the router will close, and the request's id."""
    status, reason = head.start
    switching = status == 101
    drop = _NOT_ANSWERED_SWITCHING if switching else _NOT_ANSWERED_CHUNKED if chunked else HOP_BY_HOP
    out = [f"HTTP/1.1 {status} {reason}".encode("latin-1"), _lines_without(head, drop)]
    if chunked:
        out.append(b"\r\nTransfer-Encoding: chunked")
    if close and not switching:
        out.append(b"\r\nConnection: close")
    if b"x-request-id" not in head.fields:
        out.append(f"\r\nX-Request-Id: {rid}".encode("latin-1"))
    out.append(b"\r\n\r\n")
    return b"".join(out)


def _lines_without(head, drop, named=None):
    """``head``'s header lines (a block: each after a CRLF) without those of the headers
    ``drop`` (one of the sets of :data:`_LINE_REMOVERS`), each line as it came; and without
    ``named`` ones (a client's Connection tokens, any name), the lines then read and written
    one by one."""
    if named:
        drop = drop | named
        return b"".join(b"\r\n" + name + b": " + value for lower, name, value in head.headers if lower not in drop)
    if drop.isdisjoint(head.fields):
        return head.block
    return _LINE_REMOVERS[drop].sub(b"", head.block)


def _line_remover(names):
    """A pattern of the lines of the headers ``names`` in a head's block, each with the CRLF
    before it."""
    return re.compile(rb"\r\n(?:" + b"|".join(re.escape(n) for n in sorted(names)) + rb"):[^\r]*", re.I)


# The sets of headers a head may be passed on without, each with its pattern.
_LINE_REMOVERS = {names: _line_remover(names) for names in (
    _NOT_FORWARDED, _NOT_FORWARDED_TRUSTED, _NOT_ANSWERED_CHUNKED, _NOT_ANSWERED_SWITCHING, HOP_BY_HOP)}


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
