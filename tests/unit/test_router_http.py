"""Request heads (router/http.py) and the balancing choice (router/balance.py), by table."""
import collections
import random

import pytest

from router import balance, http
from corral.routetable import Backend


def req(*lines):
    return "\r\n".join(lines).encode("latin-1")


@pytest.mark.parametrize("data, status", [
    (req("GET / HTTP/1.1", "Host: a", "Content-Length: 3", "Transfer-Encoding: chunked"), 400),
    (req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Content-Length: 3"), 400),
    (req("POST / HTTP/1.1", "Host: a", "Content-Length: 3", "Content-Length: 4"), 400),
    (req("POST / HTTP/1.1", "Host: a", "Content-Length: +3"), 400),
    (req("POST / HTTP/1.1", "Host: a", "Content-Length: 3, 3"), 400),
    (req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip, chunked"), 501),
    (req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 501),
    (req("POST / HTTP/1.0", "Host: a", "Transfer-Encoding: chunked"), 400),
    (req("GET / HTTP/1.1", "Host: a", "Content-Length : 3"), 400),
    (req("GET / HTTP/1.1", "Host: a", " folded: line"), 400),
    (b"GET / HTTP/1.1\r\nHost: a\nX: y", 400),
    (req("GET / HTTP/1.1", "Host: a", "X: a\x00b"), 400),
    (req("GET /a b HTTP/1.1", "Host: a"), 400),
    (req("GET / HTTP/2.0", "Host: a"), 505),
    (req("GET / FTP/1.0", "Host: a"), 400),
    (req("GET /" + "a" * 9000 + " HTTP/1.1", "Host: a"), 414),
    (req("GET / HTTP/1.1", *[f"X-{i}: y" for i in range(101)]), 431),
    (req("GET / HTTP/1.1", "X: " + "y" * 40000), 431),
], ids=["cl+te", "te+cl", "two-lengths", "signed-length", "list-length", "gzip", "two-te", "te-in-1.0",
        "space-before-colon", "folding", "bare-lf", "nul", "space-in-target", "http2", "not-http",
        "long-line", "many-headers", "big-header"])
def test_refused_heads(data, status):
    with pytest.raises(http.BadMessage) as e:
        http.parse_request(data)
    assert e.value.status == status and str(e.value)


@pytest.mark.parametrize("lines, want", [
    (("GET / HTTP/1.1", "Host: Shop.Example:8080"), ("shop.example", "/")),
    (("GET http://other.test/x?y HTTP/1.1", "Host: shop.test"), ("other.test", "/x?y")),
    (("GET / HTTP/1.0",), http.BadMessage),       # no host: nothing to route by
    (("GET / HTTP/1.1",), http.BadMessage),
    (("GET / HTTP/1.1", "Host: a", "Host: b"), http.BadMessage),
    (("GET / HTTP/1.1", "Host: user@a"), http.BadMessage),
    (("GET / HTTP/1.1", "Host: *.a"), http.BadMessage),
    (("CONNECT a:443 HTTP/1.1", "Host: a:443"), http.BadMessage),
])
def test_request_host(lines, want):
    head = http.parse_request(req(*lines))
    if want is http.BadMessage:
        with pytest.raises(http.BadMessage):
            http.request_host(head)
    else:
        assert http.request_host(head) == want


def test_forged_forwarding_headers_are_replaced_unless_the_peer_is_trusted():
    head = http.parse_request(req("GET / HTTP/1.1", "Host: a.test", "X-Forwarded-For: 6.6.6.6",
                                  "X-Request-Id: forged", "X-Forwarded-Proto: https", "Forwarded: for=6.6.6.6",
                                  "Connection: keep-alive, X-Secret", "Keep-Alive: 5"))
    untrusted = http.backend_head(head, "/", host_header=b"a.test", peer="10.0.0.9", proto="http",
                                  rid=http.request_id(head, False) or "new", trusted=False).decode()
    assert "X-Forwarded-For: 10.0.0.9\r\n" in untrusted and "6.6.6.6" not in untrusted
    assert "X-Request-Id: new\r\n" in untrusted and "forged" not in untrusted
    assert "X-Forwarded-Proto: http\r\n" in untrusted and "Keep-Alive" not in untrusted
    trusted = http.backend_head(head, "/", host_header=b"a.test", peer="10.0.0.9", proto="http",
                                rid=http.request_id(head, True) or "new", trusted=True).decode()
    assert "X-Forwarded-For: 6.6.6.6, 10.0.0.9\r\n" in trusted and "X-Request-Id: forged\r\n" in trusted
    assert "X-Forwarded-Proto: https\r\n" in trusted and trusted.count("X-Forwarded-Proto") == 1


def test_power_of_two_choices_prefers_the_less_loaded_and_never_an_excluded_one():
    backends = [Backend(f"b{i}", "127.0.0.1", 1000 + i) for i in range(4)]
    outstanding = {"b0": 0, "b1": 5, "b2": 5, "b3": 5}
    rng = random.Random(1)
    picks = collections.Counter(balance.pick(backends, outstanding, rng).id for _ in range(3000))
    assert picks["b0"] > 1300          # b0 wins every draw it is in: half of them
    assert balance.pick(backends, {}, rng, exclude={"b0", "b1", "b2"}).id == "b3"
    assert balance.pick(backends, {}, rng, exclude={b.id for b in backends}) is None
    assert balance.pick(backends[:1], {}, rng).id == "b0"


def test_a_resting_backend_is_drawn_only_when_no_other_is_left():
    backends = [Backend(f"b{i}", "127.0.0.1", 1000 + i) for i in range(3)]
    rng = random.Random(2)
    picks = collections.Counter(balance.pick(backends, {}, rng, resting={"b0"}).id for _ in range(300))
    assert set(picks) == {"b1", "b2"}
    assert balance.pick(backends, {}, rng, exclude={"b1", "b2"}, resting={"b0"}).id == "b0"
    assert balance.pick(backends, {}, rng, resting={"b0", "b1", "b2"}) is not None   # all rest: still one


@pytest.mark.parametrize("lines", [
    ("Host: a", "X-Empty:", "X-Spaces:   padded \t ", "X-Tab: in\tside", "X-Colon: a:b:c", "X-High: caf\xe9"),
    ("Host: a",),
    ("Host: a", "Connection: Keep-Alive, X-Secret", "connection: UPGRADE", "Upgrade: websocket"),
    ("HOST:   a \t", "X-Forwarded-For:  1.2.3.4 ", "x-FORWARDED-for: 5.6.7.8", "TE: trailers", "Te-Extra: x",
     "Transfer-Encoding-Like: y", "Content-Length: 0"),
], ids=["values", "one-header", "connection-tokens", "names-in-any-case"])
def test_the_one_pass_header_reading_agrees_with_the_line_by_line_one(lines):
    data = req("GET / HTTP/1.1", *lines)
    fast = http.parse_request(data)
    slow = http._header_lines(data.split(b"\r\n")[1:])
    noted = {}
    for lower, _, value in slow:
        if lower in http.NOTED:
            noted.setdefault(lower, []).append(value)
    assert fast.fields == noted
    assert fast.block == data[data.index(b"\r\n"):]
    assert fast.connection == {t.strip().lower() for lower, _, v in slow if lower == b"connection"
                               for t in v.split(b",")}


def test_every_header_a_head_does_not_drop_passes_on_as_it_came():
    head = http.parse_request(req("GET /p?q HTTP/1.1", "Host: a.test", "TE: trailers", "Te-Extra:  kept  ",
                                  "X-Forwarded-For-Me: kept", "keep-alive: 5", "Cookie: a=b", "X-Real-IP: 6.6.6.6"))
    assert http.backend_head(head, "/p?q", host_header=b"a.test", peer="10.0.0.9", proto="http", rid="r",
                             trusted=False) == (
        b"GET /p?q HTTP/1.1\r\nHost: a.test\r\nTe-Extra:  kept  \r\nX-Forwarded-For-Me: kept\r\nCookie: a=b\r\n"
        b"X-Forwarded-For: 10.0.0.9\r\nX-Request-Id: r\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\n\r\n")
    answer = http.parse_response(b"HTTP/1.0 200 OK\r\nServer: s\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                                 b"Content-Length: 2\r\nX-Keep:  as it came ")
    assert http.client_head(answer, chunked=False, close=False, rid="r") == (
        b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nX-Keep:  as it came \r\nX-Request-Id: r\r\n\r\n")
    assert http.client_head(answer, chunked=True, close=True, rid="r") == (
        b"HTTP/1.1 200 OK\r\nServer: s\r\nX-Keep:  as it came \r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\nX-Request-Id: r\r\n\r\n")


@pytest.mark.parametrize("line, words", [
    ("junk X: y", "no valid name"),            # a well-formed field after junk on the same line
    ("X : y", "no valid name"),
    (" X: y", "folded"),
    ("X: a\x01b", "control character"),
    ("X: a\x7fb", "control character"),
    ("X y", "no valid name"),
    ("X:" + " " * 100 + "\x01", "control character"),
], ids=["junk-before-a-field", "space-before-colon", "folded", "control", "del", "no-colon", "spaces-then-control"])
def test_a_head_with_one_bad_line_among_good_ones_is_refused_by_that_line(line, words):
    with pytest.raises(http.BadMessage) as e:
        http.parse_request(req("GET / HTTP/1.1", "Host: a", line, "Accept: */*"))
    assert e.value.status == 400 and words in str(e.value)


def test_a_response_head_gives_its_framing_and_connection_tokens_in_one_pass():
    resp = http.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: Keep-Alive\r\nX: y")
    assert (resp.start, resp.length, resp.chunked, resp.connection) == ((200, "OK"), 12, False, {b"keep-alive"})
    assert http.parse_response(b"HTTP/1.0 204 No Content").connection == frozenset()
    with pytest.raises(http.BadMessage):
        http.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2")


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2",      # was read as Content-Length alone
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\nX: a",      # was read as X alone: no length, a body until close
    b"HTTP/1.1 200 OK\nContent-Length: 2",
], ids=["lf-before-length", "lf-after-length", "lf-after-status"])
def test_an_answer_head_with_a_bare_lf_is_refused_not_read_as_fewer_lines(data):
    with pytest.raises(http.BadMessage):
        http.parse_response(data)


class Pieces:
    """A connection that yields ``pieces`` one read at a time, then an end."""

    def __init__(self, *pieces):
        self.pieces = list(pieces)

    def recv(self, size, timeout, wait_first=False):
        return self.pieces.pop(0) if self.pieces else b""


@pytest.mark.parametrize("pieces", [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next",),                 # whole, with the next one behind it
    (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next",),         # blank lines first (slow path)
    (b"GET / HTTP/1.1\r", b"\nHost: a\r\n", b"\r", b"\nGET /next"),   # split across reads
    (b"\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next"),
], ids=["whole", "leading-blank-lines", "split", "blank-then-whole"])
def test_a_request_head_is_read_whole_however_it_arrives(pieces):
    from router.bodies import CLIENT, Reader
    reader = Reader(Pieces(*pieces), CLIENT)
    assert reader.head(http.Limits(), 1.0, 1.0, lambda buf: None) == b"GET / HTTP/1.1\r\nHost: a"
    assert bytes(reader.buf) == b"GET /next"
