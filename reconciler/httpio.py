"""What every route module of the reconciler's API shares: the error a handler raises, and
reading a request's body, bounded.

A handler answers ``(status, body)`` or raises :class:`HttpError` with a status and
one sentence; :class:`reconciler.api.Api` turns the error into ``{"error": sentence}``.
Bodies are read only up to a limit the route names (413 beyond it), JSON bodies must
be one object. Pure but for reading ``wsgi.input``.
"""
import json

MAX_BODY = 8 << 20   # bytes of a JSON request body at most

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 302: "Found", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           410: "Gone", 413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


class HttpError(Exception):
    """An answer other than success: ``status`` and ``message``, one sentence naming what is wrong."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def read_body(environ, limit):
    """The request's body as bytes; HttpError 400 for a bad Content-Length, 413 over ``limit``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HttpError(400, "Content-Length is not a number") from None
    if length > limit:
        raise HttpError(413, f"the request body is {length} bytes, over the limit of {limit}")
    return environ["wsgi.input"].read(length) if length else b""


def json_body(environ, limit=MAX_BODY):
    """The request's body as a JSON object (``{}`` when empty); HttpError 400 naming what is wrong."""
    raw = read_body(environ, limit)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise HttpError(400, "the request body is not valid JSON") from None
    except RecursionError:  # e.g. 100k nested brackets: a client's fault, not a 500
        raise HttpError(400, "the request body nests JSON deeper than the API reads") from None
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    return body
