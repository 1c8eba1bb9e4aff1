"""Streamed API answers (chunked NDJSON) for ``corral logs`` and ``corral exec``.

The reconciler writes one JSON object a line as soon as it has it, and an
empty object every few seconds while nothing happens (see
reconciler/session_relay.py), so a read that hears nothing for :data:`READ_TIMEOUT`
seconds means the API is gone, never that the stream is merely quiet.

Like the client's requests, a stream is one ``http.client`` connection of its
own; its answer's body is read as it arrives (``read1``), the chunked
transfer coding undone by ``http.client``.
"""
import json

from corral.cli.client import ClientError, Unreachable, _short, connect, encode_body, target

class NoAnswer(ClientError):
    """No API URL answered at all (as against one that answered with an error)."""


class Lost(ClientError):
    """A stream's connection ended before the stream did."""


READ_TIMEOUT = 30.0     # seconds without a byte (keepalives come every 2 s) before the API counts as gone
CONNECT_TIMEOUT = 10.0
BLOCK = 1024 * 1024


def open_stream(client, method, path, *, params=None, json=None, headers=None):
    """``(url, response)`` of the first API URL that answers ``method path`` with 200, streamed;
    the response is an ``http.client.HTTPResponse`` that closes its connection when closed.

    Raises ClientError with the API's sentence for an error status, or when no URL answers.
    """
    import http.client
    payload, extra = encode_body(json, None)
    sent = dict(client.headers, **extra, **(headers or {}))
    errors = []
    for url in list(client.urls):
        try:
            conn, base = connect(url, CONNECT_TIMEOUT, READ_TIMEOUT)
        except Unreachable as e:
            errors.append(f"{url}: {e}")
            continue
        try:
            conn.request(method, target(base, path, params), body=payload, headers=sent)
            r = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            errors.append(f"{url}: {_short(e)}")
            continue
        # The response is the stream's owner: closing the connection would close it too (when the
        # server keeps the connection alive), so the socket alone is let go of; the response's
        # file keeps it open until the response is closed.
        sock, conn.sock = conn.sock, None
        if sock is not None:
            sock.close()
        if r.status != 200:
            try:
                msg = _error_of(r.read())
            except (OSError, http.client.HTTPException):
                msg = None
            r.close()
            raise ClientError(msg or f"{method} {path} failed with HTTP {r.status}")
        return url, r
    raise NoAnswer("no corral API answered (" + "; ".join(errors) + ")")


def _error_of(content):
    """The ``error`` sentence of an error answer's JSON body, else None."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


MAX_BYTES_ITEM = 8 * 1024 * 1024   # the most bytes one item's ``{"bytes": N}`` may announce


class _Reader:
    """Lines and counted bytes of a streamed answer, read in blocks as they arrive."""

    def __init__(self, response):
        self.response = response
        self.buf = bytearray()
        self.pos = 0

    def _more(self):
        block = self.response.read1(BLOCK)
        if not block:
            return False
        del self.buf[:self.pos]
        self.pos = 0
        self.buf += block
        return True

    def line(self):
        """The next line (without its newline), or None at the end of the answer."""
        start = self.pos
        while (end := self.buf.find(b"\n", start)) < 0:
            start = len(self.buf) - self.pos
            if not self._more():
                return None
            start += self.pos
        line, self.pos = bytes(self.buf[self.pos:end]), end + 1
        return line

    def take(self, n):
        """The next ``n`` bytes; ClientError when the answer ends first."""
        while len(self.buf) - self.pos < n:
            if not self._more():
                raise ClientError(f"the stream ended inside an item of {n} bytes")
        data, self.pos = bytes(self.buf[self.pos:self.pos + n]), self.pos + n
        return data


def items(response):
    """The JSON objects of a streamed answer, as they arrive (keepalives left out). An object that
    says ``{"bytes": N}`` is followed by N bytes of log lines: they are its ``data`` (bytes).

    Raises ClientError when the connection is lost before the stream's end.
    """
    import http.client
    reader = _Reader(response)
    try:
        while (line := reader.line()) is not None:
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, dict) and "bytes" in item:
                size = item.pop("bytes")
                if type(size) is not int or not 0 <= size <= MAX_BYTES_ITEM:
                    raise ClientError(f"the API announced an item of {size!r} bytes")
                item["data"] = reader.take(size)
            if item:
                yield item
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise Lost(f"the connection to the API was lost ({_short(e)})")
