"""Logs and exec through any reconciler: HTTP streams relayed to and from agents over the bus.

::

    corral logs  --GET /v1/instances/ID/logs (chunked NDJSON)-->  StreamRoutes
    corral exec  --POST /v1/exec (chunked NDJSON back)------->   StreamRoutes
                 --POST /v1/exec/SESSION/input|resize-------->      |
                                                              Relay: one Session per stream
                          logs_open | exec_open | credit | exec_input | exec_resize | stream_close
                                                              v  (signed bus, to the node only)
                                                            agent (nodeagent/sessions.py)
                          logs_chunk | exec_output | stream_end | credit (input consumed)

Flow control, end to end: the agent sends chunk ``seq`` only while ``seq <=
acked + window``; the relay acknowledges a chunk after the HTTP server has
written it to the client (eventlet.wsgi blocks while the client's socket is
full), so a slow client holds at most ``window`` chunks here and one at the
agent. Input the other way is held to the same window by the agent's credits.

Every answer is one JSON object a line: ``{"data": "<log lines, each ending in
a newline>"}`` (with ``bytes=1``: ``{"bytes": N}``, a newline and the N bytes of
the lines as the node read them, which spares both ends the JSON escaping of
every byte), ``{"caught_up": true}``, ``{"out"|"err": base64}``, ``{"started": {...}}``, ``{}`` (a
keepalive, every :data:`KEEPALIVE` seconds, which is also how a client that
went away is noticed), and last ``{"end": why, "error": bool, "exit_code": n}``.
A node that does not answer an open within :data:`OPEN_TIMEOUT`, or stops
reporting while a stream runs, ends it with one sentence; it never hangs.
"""
import base64
import json
import logging
import time
import uuid

import eventlet
import eventlet.queue

from reconciler.actor import actor
from reconciler.httpio import HttpError, json_body

log = logging.getLogger(__name__)

WINDOW = 8            # chunks in flight per stream, each way
OPEN_TIMEOUT = 10.0   # seconds a node has to answer an open
KEEPALIVE = 2.0       # seconds between keepalives: a credit to the agent, {} to the client
INPUT_WAIT = 30.0     # seconds an input POST waits for the agent to take earlier input
MAX_INPUT = 256 * 1024


def pick_instance(instances, app, process=None, instance=None):
    """The instance that ``corral exec`` runs in: of ``app`` (and ``process``), ``instance``
    when named, else the first ready one, else the first running one, else the first.
    Raises HttpError (404) naming what matched nothing. Pure."""
    mine = [i for i in instances if i["app"] == app and (process is None or i["process"] == process)]
    if instance is not None:
        mine = [i for i in mine if i["id"] == instance]
        if not mine:
            raise HttpError(404, f"instance {instance!r} of app {app!r} not found")
    if not mine:
        what = f"process {process!r} of app {app!r}" if process else f"app {app!r}"
        raise HttpError(404, f"{what} has no instances")
    for good in (lambda i: i["ready"], lambda i: i["state"] == "running", lambda i: True):
        for i in mine:
            if good(i):
                return i


def chunk_bytes(msg):
    """The lines of a ``logs_chunk`` as bytes, every line ending in a newline: its attachment (given
    a last newline if it lacks one, so that a node's chunk never runs into the next one's first
    line), else its body's ``lines`` (agents before attachments). Pure."""
    data = msg.attachment if msg.attachment else "".join(
        line + "\n" for line in msg.body.get("lines", ())).encode("utf-8")
    return data if not data or data.endswith(b"\n") else data + b"\n"


def client_item(msg):
    """The object the client gets for one message from the agent (log lines as bytes under
    ``data``: :func:`encode_item` writes them). Pure."""
    body = msg.body
    if msg.type == "logs_chunk":
        data = chunk_bytes(msg)
        return dict({"data": data} if data else {}, **({"caught_up": True} if body.get("caught_up") else {}))
    if msg.type == "exec_output":
        return {body["fd"]: body["data"]}
    return {"end": body["reason"], "error": bool(body.get("error")), "exit_code": body.get("exit_code")}


class Session:
    """One stream relayed by this reconciler: what the agent sent, not yet written to the client
    (at most the window, plus the end), and the input credit the agent has granted."""

    def __init__(self, relay, sid, node, kind):
        self.relay = relay
        self.id = sid
        self.node = node
        self.kind = kind
        self.queue = eventlet.queue.LightQueue(maxsize=relay.window + 2)
        self.heard = False
        self.acked = 0       # output chunks acknowledged to the agent
        self.consumed = 0    # output chunks written to the client
        self.input_sent = 0
        self.input_acked = 0
        self.input_room = eventlet.queue.LightQueue(maxsize=1)
        self.overflowed = False
        self.ended = False   # the agent said the stream is over
        self.over = False    # ended, or closed by the client

    def deliver(self, msg):
        """From the bus handler: queue one message of the agent (never blocks)."""
        self.heard = True
        if msg.type == "credit":
            if msg.body["ack"] > self.input_acked:
                self.input_acked = msg.body["ack"]
                try:
                    self.input_room.put_nowait(True)
                except eventlet.queue.Full:
                    pass
            return
        try:
            self.queue.put_nowait(msg)
        except eventlet.queue.Full:  # an agent that ignores the window: end the stream, keep nothing
            self.overflowed = True

    def consumed_through(self, seq):
        """Chunk ``seq`` was written to the client; acknowledge every half window."""
        self.consumed = seq
        if self.consumed - self.acked >= max(1, self.relay.window // 2):
            self.credit()

    def credit(self):
        """Tell the agent what was consumed (also the keepalive that keeps the stream open)."""
        self.acked = self.consumed
        self.relay.send(self.node, "credit", {"stream": self.id, "ack": self.consumed})

    def send_input(self, data, eof):
        """Forward stdin bytes in order, waiting while the agent holds a window of them.
        Raises HttpError when the agent takes none for :data:`INPUT_WAIT` seconds."""
        deadline = time.monotonic() + INPUT_WAIT
        while self.input_sent >= self.input_acked + self.relay.window:
            if self.over:
                raise HttpError(410, f"exec session {self.id} has ended")
            left = deadline - time.monotonic()
            if left <= 0:
                raise HttpError(503, f"node {self.node} took no input for {INPUT_WAIT:g}s")
            try:
                self.input_room.get(timeout=min(left, 1.0))
            except eventlet.queue.Empty:
                pass
        self.input_sent += 1
        body = {"stream": self.id, "seq": self.input_sent, "eof": bool(eof)}
        if data:
            body["data"] = base64.b64encode(data).decode("ascii")
        if not self.relay.send(self.node, "exec_input", body):
            raise HttpError(503, f"node {self.node} is not connected to this reconciler")

    def resize(self, rows, cols):
        """Forward a terminal size change."""
        self.relay.send(self.node, "exec_resize", {"stream": self.id, "rows": rows, "cols": cols})

    def items(self, refusal=lambda: None):
        """The client's NDJSON objects, as the agent's messages come, until the end (or a failure
        said in one sentence, ``refusal()``'s too: the client's token refused since it opened the
        stream). Acknowledges each chunk once the caller asks for the next."""
        opened = time.monotonic()
        while True:
            try:
                msg = self.queue.get(timeout=self.relay.keepalive)
            except eventlet.queue.Empty:
                msg = None
            refused = refusal()
            if refused:
                yield {"end": refused, "error": True}
                return
            if self.overflowed:
                yield {"end": f"node {self.node} sent past the stream's window; the stream was cut", "error": True}
                return
            if msg is None:
                failure = self._silence(opened)
                if failure:
                    yield {"end": failure, "error": True}
                    return
                self.credit()
                yield {}
                continue
            item = client_item(msg)
            if msg.type == "stream_end":
                self.ended = self.over = True
                yield item
                return
            yield item
            self.consumed_through(msg.body["seq"])

    def _silence(self, opened):
        if not self.heard and time.monotonic() - opened > self.relay.open_timeout:
            return f"node {self.node} did not answer within {self.relay.open_timeout:g}s"
        silent = self.relay.node_silence(self.node)
        if silent > self.relay.heartbeat_timeout:
            return f"node {self.node} stopped answering (no report for {silent:.0f}s); the stream ended"
        return None


class Relay:
    """Every stream relayed by this reconciler. ``send(peer, type, body, epoch)`` is the bus
    server's; ``node_silence(node)`` says how long ago the node last reported."""

    types = frozenset({"logs_chunk", "exec_output", "stream_end", "credit"})

    def __init__(self, send, node_silence, heartbeat_timeout, new_id=lambda: uuid.uuid4().hex,
                 window=WINDOW, open_timeout=OPEN_TIMEOUT, keepalive=KEEPALIVE):
        self._send = send
        self.node_silence = node_silence
        self.heartbeat_timeout = heartbeat_timeout
        self.new_id = new_id
        self.window = window
        self.open_timeout = open_timeout
        self.keepalive = keepalive
        self.sessions = {}

    def send(self, node, type, body):
        """Send one message to ``node``'s agent; False when it is not connected."""
        return self._send(node.encode("utf-8"), type, body, 0)

    def on_message(self, peer, msg):
        """Bus handler: hand an agent's stream message to its session (from that node only)."""
        session = self.sessions.get(msg.body["stream"])
        if session is not None and session.node.encode("utf-8") == peer:
            session.deliver(msg)

    def open(self, node, type, body, kind):
        """Open a stream on ``node`` (``logs_open`` or ``exec_open`` with ``body``); the Session.
        Raises HttpError (503) when the node is not connected to this reconciler."""
        session = Session(self, self.new_id(), node, kind)
        self.sessions[session.id] = session
        if not self.send(node, type, dict(body, stream=session.id, window=self.window)):
            del self.sessions[session.id]
            raise HttpError(503, f"node {node} is not connected to this reconciler")
        return session

    def close(self, session):
        """Forget a stream; tell the agent to stop it when it had not ended."""
        session.over = True
        if self.sessions.pop(session.id, None) is not None and not session.ended:
            self.send(session.node, "stream_close", {"stream": session.id})


class StreamRoutes:
    """The API routes of logs and exec (added to :class:`reconciler.api.Api`)::

        GET  /v1/instances/ID/logs?tail=N&since=SECONDS&follow=1&previous=1&bytes=1
        POST /v1/exec                      {"app", "process", "instance", "argv", "tty", "rows", "cols"}
        POST /v1/exec/SESSION/input        {"data": base64, "eof": bool}
        POST /v1/exec/SESSION/resize       {"rows", "cols"}
    """

    def __init__(self, store, state, relay, checker=lambda environ: lambda: None):
        self.store = store
        self.state = state
        self.relay = relay
        self.checker = checker   # environ -> () -> a sentence once the request's token is refused (ends its stream)

    def routes(self):
        """``(method, pattern, handler, needs_auth)`` entries for the API's route table."""
        return [
            ("GET", r"/v1/instances/(?P<iid>[^/]+)/logs", self.logs, True),
            ("POST", r"/v1/exec", self.exec, True),
            ("POST", r"/v1/exec/(?P<sid>[^/]+)/input", self.input, True),
            ("POST", r"/v1/exec/(?P<sid>[^/]+)/resize", self.resize, True),
        ]

    def _reachable(self, inst):
        if inst["state"] == "unknown":
            raise HttpError(503, f"node {inst['node']} of instance {inst['id']} is unreachable")

    def _open(self, inst, type, body, kind):
        self._reachable(inst)
        return self.relay.open(inst["node"], type, body, kind)

    def _finished_run(self, iid):
        """A run that has ended (its instance is gone from the table, its log stays on its
        node) as the instance whose log to read, or None."""
        run = next(iter(self.store.list_runs(run_id=iid)), None)
        return {"id": run.id, "node": run.node, "state": "stopped"} if run is not None and run.node else None

    def logs(self, environ, query, iid):
        inst = next((i for i in self.state.instances() if i["id"] == iid), None) or self._finished_run(iid)
        if inst is None:
            raise HttpError(404, f"instance {iid!r} not found")
        body = {"instance": iid, "follow": _flag(query.get("follow")), "previous": _flag(query.get("previous"))}
        try:
            if query.get("tail") not in (None, "", "-1"):
                body["tail"] = max(0, int(query["tail"]))
            if query.get("since") not in (None, ""):
                body["since_seconds"] = max(0.0, float(query["since"]))
        except ValueError:
            raise HttpError(400, "tail must be a whole number and since a number of seconds")
        session = self._open(inst, "logs_open", body, "logs")
        return 200, Streaming(self.relay, session, session.items(self.checker(environ)),
                              binary=_flag(query.get("bytes")))

    def exec(self, environ, query):
        req = json_body(environ)
        argv = req.get("argv")
        if not isinstance(req.get("app"), str) or not req["app"]:
            raise HttpError(400, "exec needs the app's name")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise HttpError(400, "exec needs a command: argv, a non-empty list of strings")
        try:
            inst = pick_instance(self.state.instances(), req["app"], req.get("process"), req.get("instance"))
        except HttpError:
            if self.store.get_app(req["app"]) is None:
                raise HttpError(404, f"app {req['app']!r} not found") from None
            raise
        tty = bool(req.get("tty"))
        body = {"instance": inst["id"], "argv": argv, "tty": tty}
        for k in ("rows", "cols"):
            if isinstance(req.get(k), int) and 0 < req[k] <= 10000:
                body[k] = req[k]
        session = self._open(inst, "exec_open", body, "exec")
        who = actor(environ)
        command = " ".join(argv)[:500]
        self._audit(inst, "Exec", f"{who} ran {command!r} in instance {inst['id']} on node {inst['node']}", who)
        return 200, Streaming(self.relay, session, self._exec_items(session, inst, command, who, self.checker(environ)))

    def _exec_items(self, session, inst, command, actor, refusal):
        yield {"started": {"session": session.id, "instance": inst["id"], "node": inst["node"]}}
        outcome = "ended with the connection to the client (exit code unknown)"
        try:
            for item in session.items(refusal):
                if "end" in item:
                    code = item.get("exit_code")
                    outcome = f"exited with code {code}" if code is not None else f"failed: {item['end']}"
                yield item
        finally:
            self._audit(inst, "ExecFinished", f"{command!r} in instance {inst['id']} {outcome}", actor)

    def _audit(self, inst, reason, message, actor):
        try:
            self.store.add_event("app", inst["app"], reason, message, actor)
        except Exception as e:  # the store being down must not break a running exec
            log.warning("exec audit event not stored (%s): %s", e, message)

    def _session(self, sid):
        session = self.relay.sessions.get(sid)
        if session is None or session.kind != "exec":
            raise HttpError(404, f"no exec session {sid!r} on this reconciler (it ended, or was opened "
                                       "through another API address)")
        return session

    def input(self, environ, query, sid):
        session = self._session(sid)
        req = json_body(environ)
        try:
            data = base64.b64decode(req.get("data") or "", validate=True)
        except ValueError:
            raise HttpError(400, "input data must be base64")
        if len(data) > MAX_INPUT:
            raise HttpError(413, f"one input chunk may hold at most {MAX_INPUT} bytes")
        session.send_input(data, bool(req.get("eof")))
        return 200, {"ok": True}

    def resize(self, environ, query, sid):
        session = self._session(sid)
        req = json_body(environ)
        rows, cols = req.get("rows"), req.get("cols")
        if not all(isinstance(v, int) and 0 < v <= 10000 for v in (rows, cols)):
            raise HttpError(400, "rows and cols must be whole numbers from 1 to 10000")
        session.resize(rows, cols)
        return 200, {"ok": True}


def encode_item(item, binary=False):
    """The bytes of one streamed item: a JSON line, its log lines (``data``, bytes) as a JSON string
    (invalid UTF-8 replaced); or with ``binary``, as ``{"bytes": N}`` and a newline followed by the
    N bytes as they are (no escaping on either side). Pure."""
    data = item.get("data")
    if data is None:
        return json.dumps(item).encode("utf-8") + b"\n"
    if binary:
        head = dict(item, bytes=len(data))
        del head["data"]
        return b"".join((json.dumps(head).encode("utf-8"), b"\n", data))
    return json.dumps(dict(item, data=data.decode("utf-8", errors="replace"))).encode("utf-8") + b"\n"


class Streaming:
    """A streamed response body (chunked NDJSON, log lines as raw bytes when ``binary``: see
    :func:`encode_item`); the session is closed when the client is done or gone (the WSGI server
    calls :meth:`close`)."""

    content_type = "application/x-ndjson"

    def __init__(self, relay, session, items, binary=False):
        self.relay = relay
        self.session = session
        self.items = items
        self.binary = binary

    def __iter__(self):
        for item in self.items:
            yield encode_item(item, self.binary)

    def close(self):
        """Close the item generator and the session (tells the agent when the stream had not ended)."""
        try:
            self.items.close()
        finally:
            self.relay.close(self.session)


def _flag(value):
    return str(value or "").lower() in ("1", "true", "yes")
