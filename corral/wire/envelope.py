"""Signed envelopes: the bytes of a bus message, and the checks that let one in.

Pure: no sockets, no clock reads (``now`` is always passed in). The only
outside input is ``os.urandom`` for a default nonce.

Framing of the wire bytes (one ZeroMQ frame)::

    <64 lowercase hex digits: HMAC-SHA256(key, signed)> "." <signed>
    signed = <payload> [ NUL <attachment> ]

``payload`` is the canonical JSON (UTF-8, sorted keys, no spaces) of
``{"v", "type", "sender", "epoch", "ts", "nonce", "body"}``, and ``"to"`` (the
recipient's name) where the sender knows it: an agent names the reconciler
each message is for once it has heard from it (:mod:`corral.wire.bus`), so
that a message replayed to another reconciler is refused there. (Only agents
send it, to reconcilers, which are upgraded first: a 0.1.0 agent refuses an
envelope field it does not know.) The signature has
a fixed length at a fixed place, so nothing has to be parsed before it is
checked, and no payload can be mistaken for a signature or the other way round.

``attachment``: raw bytes after the first NUL (JSON text never holds a raw NUL,
so the cut is unambiguous), for the types of :data:`ATTACHMENTS` only and at
most their limit: log lines travel as the bytes of the files they were read
from, with no JSON escaping on either side (which cost more than all the rest
of a chunk's way together). The signature covers it with the payload.

:class:`Opener` checks, in this order, each failure raising :class:`Rejected`
with its ``reason``:

1. size (at most :data:`MAX_BYTES`) and framing -> ``malformed``
2. signature, in constant time -> ``signature``
3. JSON and field types -> ``malformed``; ``v`` -> ``version``
4. ``ts`` within ``window`` seconds of ``now`` either way, and not before
   ``not_before`` (the opener's start: what was sealed before a reconciler
   started was not meant for it, and its nonces are gone) -> ``expired``
5. nonce not seen before -> ``replayed``
6. type known -> ``type``; body valid against its JSON Schema, an attachment
   only where its type takes one and within its limit -> ``schema``

Forward compatibility (:mod:`corral.wire.compat`): a body may carry fields
its schema does not declare (a peer one minor release newer sends them),
bounded in number and size; they are checked against an opened copy of the
schema and dropped before the message is returned. The envelope likewise
takes up to ``compat.MAX_UNKNOWN`` fields it does not know, and ignores them.

Schema checks run on jsonschema-rs first: a reconciler of 1,000 nodes opens
1,000 reports a second, and jsonschema took about 2 ms for a report of 10
instances (about 10 us in jsonschema-rs). A body it refuses is checked again
by jsonschema, whose verdict is final and whose error gives the sentence.

Only a message that passes all of them is remembered (its nonce) and counted
as accepted: a rejected message changes nothing but a counter.
"""
import collections
import dataclasses
import functools
import hashlib
import heapq
import hmac
import json
import math
import os

import jsonschema
import jsonschema_rs

import schemas
from corral.canonical import canonical_bytes
from corral.versions import BUS as VERSION
from corral.wire import compat

MAX_BYTES = 8 * 1024 * 1024
SIG_LEN = 64  # hex digits of an HMAC-SHA256
MAX_NONCE_LEN = 128
REASONS = frozenset({"malformed", "version", "signature", "expired", "replayed", "schema", "type"})
MAX_NAME_LEN = 253   # of a recipient's name
ATTACHMENTS = {"logs_chunk": 1 << 20}   # the types that may carry an attachment, and its limit in bytes

PING_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "either way: a liveness probe; 'n' lets the sender match answers",
    "type": "object",
    "additionalProperties": False,
    "properties": {"n": {"type": "integer"}},
}


# logs and exec streams (nodeagent/sessions.py, reconciler/session_relay.py)
STREAM_TYPES = ("logs_open", "exec_open", "logs_chunk", "exec_output", "stream_end", "credit",
                "exec_input", "exec_resize", "stream_close")


def default_schemas():
    """Return the body schema of every message type the cluster speaks, by type."""
    return {
        "report": schemas.load("wire/report"),
        "alive": schemas.load("wire/alive"),
        "ack": schemas.load("wire/ack"),
        "assign": schemas.load("wire/assign"),
        "ping": PING_SCHEMA,
        "routes": schemas.load("wire/routes"),
        **{t: schemas.load(f"wire/{t}") for t in STREAM_TYPES},
    }


@dataclasses.dataclass(frozen=True)
class Message:
    """One accepted message: who sent what, under which epoch, and when."""

    type: str
    sender: str
    epoch: int
    timestamp: float
    nonce: str
    body: dict
    attachment: bytes = b""
    to: str | None = None   # the recipient its sender named, if it named one


class Rejected(Exception):
    """A message that must be dropped; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason, detail):
        assert reason in REASONS, reason
        super().__init__(f"message rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


def _sign(key, signed):
    return hmac.new(key, signed, hashlib.sha256).hexdigest().encode("ascii")


def seal(key: bytes, type: str, sender: str, epoch: int, body: dict, now: float, nonce: str | None = None,
         attachment: bytes | None = None, to: str | None = None) -> bytes:
    """Return the signed wire bytes of one message (framing: see the module docstring).

    Raises ValueError naming the field when an argument could never be opened
    (empty type or sender, negative epoch, a timestamp that is not finite, a
    body that is not a JSON object, an attachment where the type takes none or
    over its limit, or a message that is larger than MAX_BYTES).
    """
    if not isinstance(key, bytes) or not key:
        raise ValueError("seal: the key must be non-empty bytes")
    if not isinstance(type, str) or not type:
        raise ValueError(f"seal: message type must be a non-empty string, not {type!r}")
    if not isinstance(sender, str) or not sender:
        raise ValueError(f"seal: sender must be a non-empty string, not {sender!r}")
    if not _is_int(epoch) or epoch < 0:
        raise ValueError(f"seal: epoch must be an integer >= 0, not {epoch!r}")
    if not _is_number(now):
        raise ValueError(f"seal: timestamp must be a finite number, not {now!r}")
    if not isinstance(body, dict):
        raise ValueError(f"seal: body of a {type!r} message must be a dict, not {body.__class__.__name__}")
    if nonce is None:
        nonce = os.urandom(16).hex()
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LEN:
        raise ValueError(f"seal: nonce must be a string of 1 to {MAX_NONCE_LEN} characters")
    fields = {"v": VERSION, "type": type, "sender": sender, "epoch": epoch, "ts": now, "nonce": nonce, "body": body}
    if to is not None:
        if not isinstance(to, str) or not 0 < len(to) <= MAX_NAME_LEN:
            raise ValueError(f"seal: the recipient must be a name of 1 to {MAX_NAME_LEN} characters, not {to!r}")
        fields["to"] = to
    payload = canonical_bytes(fields)
    if attachment is not None:
        if len(attachment) > ATTACHMENTS.get(type, -1):
            raise ValueError(f"seal: a {type!r} message takes no attachment of {len(attachment)} bytes")
        payload = b"".join((payload, b"\0", attachment))
    data = _sign(key, payload) + b"." + payload
    if len(data) > MAX_BYTES:
        raise ValueError(f"seal: a {type!r} message of {len(data)} bytes is larger than the {MAX_BYTES} byte limit")
    return data


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class NonceMemory:
    """The nonces accepted within the replay window, at most ``limit`` of them.

    A nonce is kept until its message's timestamp falls out of the window
    (``ts < now - window``); after that a replay is refused as expired anyway.
    When the memory is full of nonces still inside the window, the oldest is
    dropped and ``floor`` rises to its timestamp: from then on any message no
    newer than the floor counts as expired, so forgetting never lets a replay
    in -- under a flood, old-but-valid messages are refused instead. This
    assumes ``now`` does not run backwards by more than the window.
    """

    def __init__(self, window, limit):
        self.window = window
        self.limit = limit
        self.floor = -math.inf
        self._seen = {}   # nonce -> ts
        self._heap = []   # (ts, nonce), oldest first

    def __len__(self):
        return len(self._seen)

    def __contains__(self, nonce):
        return nonce in self._seen

    def forget_before(self, now):
        """Drop every nonce whose timestamp is older than ``now - window``."""
        horizon = now - self.window
        while self._heap and self._heap[0][0] < horizon:
            _, nonce = heapq.heappop(self._heap)
            del self._seen[nonce]

    def add(self, nonce, ts):
        """Remember ``nonce`` (of a message stamped ``ts``), evicting the oldest when full."""
        while len(self._seen) >= self.limit:
            old_ts, old = heapq.heappop(self._heap)
            del self._seen[old]
            self.floor = max(self.floor, old_ts)
        self._seen[nonce] = ts
        heapq.heappush(self._heap, (ts, nonce))


def _validators(schemas):
    """``(closed schemas, jsonschema validators, jsonschema_rs validators)`` by message type, each
    schema checked against its metaschema first; validators keep no state, so openers may share them."""
    closed, validators, fast = {}, {}, {}
    for type_, schema in schemas.items():
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        closed[type_] = schema
        schema = compat.opened(schema)
        validators[type_] = cls(schema)
        fast[type_] = jsonschema_rs.validator_for(schema)
    return closed, validators, fast


@functools.lru_cache(maxsize=1)
def _default_validators():
    """:func:`_validators` of :func:`default_schemas`, made once per process (a process that opens
    thousands of buses, as the scale bench's simulated agents do, checked them thousands of times)."""
    return _validators(default_schemas())


class Opener:
    """Verifies wire bytes from the bus and turns them into :class:`Message`.

    ``window``: how many seconds a timestamp may differ from ``now`` either
    way. ``schemas``: body schema by message type (default:
    :func:`default_schemas`); a type not in it is refused. Counters:
    ``accepted`` (int) and ``rejected`` (a Counter by reason).
    """

    def __init__(self, key: bytes, window: float, schemas: dict[str, dict] | None = None, max_nonces: int = 100_000,
                 not_before: float = -math.inf):
        if not isinstance(key, bytes) or not key:
            raise ValueError("Opener: the key must be non-empty bytes")
        if not window > 0:
            raise ValueError(f"Opener: the replay window must be > 0 seconds, not {window!r}")
        if max_nonces < 1:
            raise ValueError(f"Opener: max_nonces must be >= 1, not {max_nonces!r}")
        self._key = key
        self.not_before = not_before
        self.window = float(window)
        self.nonces = NonceMemory(self.window, max_nonces)
        if schemas is None:
            self._closed, self._validators, self._fast = _default_validators()
        else:
            self._closed, self._validators, self._fast = _validators(schemas)
        self.accepted = 0
        self.rejected = collections.Counter()

    def open(self, data: bytes, now: float, key: bytes | None = None) -> Message:
        """Return the message in ``data`` if it passes every check, else raise :class:`Rejected`.
        ``key``: the key it must be signed with, when not this opener's (a node's own key)."""
        try:
            msg = self._check(data, now, key or self._key)
        except Rejected as e:
            self.rejected[e.reason] += 1
            raise
        self.nonces.add(msg.nonce, msg.timestamp)
        self.accepted += 1
        return msg

    def _check(self, data, now, key):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise Rejected("malformed", f"expected bytes, got {data.__class__.__name__}")
        data = bytes(data)
        if len(data) > MAX_BYTES:
            raise Rejected("malformed", f"{len(data)} bytes is more than the {MAX_BYTES} byte limit")
        if len(data) <= SIG_LEN or data[SIG_LEN:SIG_LEN + 1] != b".":
            raise Rejected("malformed", "not a signed envelope (expected 64 hex digits, '.', payload)")
        if not hmac.compare_digest(data[:SIG_LEN], _sign(key, memoryview(data)[SIG_LEN + 1:])):
            raise Rejected("signature", "the HMAC does not match the payload under the key of its connection")
        cut = data.find(b"\0", SIG_LEN + 1)
        payload, attachment = (data[SIG_LEN + 1:], None) if cut < 0 else (data[SIG_LEN + 1:cut], data[cut + 1:])

        try:
            doc = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise Rejected("malformed", f"payload is not UTF-8 JSON ({e})") from None
        if not isinstance(doc, dict):
            raise Rejected("malformed", "payload is not a JSON object")
        if doc.get("v") != VERSION or not _is_int(doc.get("v")):
            raise Rejected("version", f"envelope version {doc.get('v')!r}, this end speaks {VERSION}")
        fields = _fields(doc)

        ts = fields["ts"]
        if abs(ts - now) > self.window:
            raise Rejected("expired", f"timestamp {ts} is {ts - now:+.3f}s from now, the window is {self.window}s")
        if ts < self.not_before:
            raise Rejected("expired", f"timestamp {ts} is from before this end started ({self.not_before})")
        if ts <= self.nonces.floor:
            raise Rejected("expired", f"timestamp {ts} is older than the nonce memory reaches (full)")
        self.nonces.forget_before(now)
        if fields["nonce"] in self.nonces:
            raise Rejected("replayed", f"nonce {fields['nonce']} was already seen within the window")

        validator = self._validators.get(fields["type"])
        if validator is None:
            raise Rejected("type", f"unknown message type {fields['type']!r} from {fields['sender']!r}")
        error = None if self._fast[fields["type"]].is_valid(fields["body"]) else \
            jsonschema.exceptions.best_match(validator.iter_errors(fields["body"]))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(body)"
            raise Rejected("schema", f"{fields['type']} body from {fields['sender']!r} at {where}: {error.message}")
        if attachment is not None and len(attachment) > ATTACHMENTS.get(fields["type"], -1):
            raise Rejected("schema", f"a {fields['type']} from {fields['sender']!r} with an attachment of "
                                     f"{len(attachment)} bytes (its type takes "
                                     + (f"at most {ATTACHMENTS[fields['type']]})" if fields["type"] in ATTACHMENTS
                                        else "none)"))
        return Message(
            type=fields["type"], sender=fields["sender"], epoch=fields["epoch"],
            timestamp=float(ts), nonce=fields["nonce"],
            body=compat.known_only(self._closed[fields["type"]], fields["body"]), attachment=attachment or b"",
            to=fields.get("to"),
        )


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _fields(doc):
    """Return the envelope fields of ``doc`` with their types checked, else raise malformed."""
    checks = {
        "type": lambda v: isinstance(v, str) and v != "",
        "sender": lambda v: isinstance(v, str) and v != "",
        "epoch": lambda v: _is_int(v) and v >= 0,
        "ts": _is_number,
        "nonce": lambda v: isinstance(v, str) and 0 < len(v) <= MAX_NONCE_LEN,
        "body": lambda v: isinstance(v, dict),
    }
    for name, ok in checks.items():
        if name not in doc or not ok(doc[name]):
            raise Rejected("malformed", f"envelope field {name!r} is missing or of the wrong type")
    if "to" in doc and not (isinstance(doc["to"], str) and 0 < len(doc["to"]) <= MAX_NAME_LEN):
        raise Rejected("malformed", "envelope field 'to' is of the wrong type")
    extra = set(doc) - set(checks) - {"v", "to"}
    if len(extra) > compat.MAX_UNKNOWN:   # a newer peer's fields are ignored, a flood of them is not
        raise Rejected("malformed", f"{len(extra)} unknown envelope fields, more than {compat.MAX_UNKNOWN}")
    return doc
