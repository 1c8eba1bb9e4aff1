"""Streamed API answers (chunked NDJSON) for ``corral logs`` and ``corral exec``.

The reconciler writes one JSON object a line as soon as it has it, and an
empty object every few seconds while nothing happens (see
reconciler/streams.py), so a read that hears nothing for :data:`READ_TIMEOUT`
seconds means the API is gone, never that the stream is merely quiet.
"""
import json

import requests

from corral.cli.client import ClientError, _short

READ_TIMEOUT = 30.0     # seconds without a byte (keepalives come every 2 s) before the API counts as gone
CONNECT_TIMEOUT = 10.0


def open_stream(client, method, path, **kw):
    """``(url, response)`` of the first API URL that answers ``method path`` with 200, streamed.

    Raises ClientError with the API's sentence for an error status, or when no URL answers.
    """
    errors = []
    for url in list(client.urls):
        try:
            r = client.session.request(method, url.rstrip("/") + path, stream=True,
                                       timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kw)
        except requests.RequestException as e:
            errors.append(f"{url}: {_short(e)}")
            continue
        if r.status_code != 200:
            try:
                msg = r.json().get("error")
            except ValueError:
                msg = None
            r.close()
            raise ClientError(msg or f"{method} {path} failed with HTTP {r.status_code}")
        return url, r
    raise ClientError("no corral API answered (" + "; ".join(errors) + ")")


def items(response):
    """The JSON objects of a streamed answer, as they arrive (keepalives left out).

    Raises ClientError when the connection is lost before the stream's end.
    """
    rest = b""
    try:
        for block in response.iter_content(chunk_size=None):
            rest += block
            *lines, rest = rest.split(b"\n")
            for line in lines:
                if line.strip():
                    item = json.loads(line)
                    if item:
                        yield item
    except (requests.RequestException, ValueError) as e:
        raise ClientError(f"the connection to the API was lost ({_short(e)})")
