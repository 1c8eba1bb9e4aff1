"""The agent's end of logs and exec streams: sessions opened by a reconciler over the bus.

::

    reconciler --logs_open | exec_open--> Streams.on_message --spawn--> log reader | exec runner
                                                                           | emit (waits for credit)
    reconciler <--logs_chunk | exec_output ... stream_end-- Channel.send --+
    reconciler --credit (ack, also a keepalive) | exec_input | exec_resize | stream_close--> Channel

Flow control is a credit window per stream: chunk ``seq`` goes only while
``seq <= acked + window``, so a slow reader stops the agent from reading (a
file, or a command's output, whose writer then blocks in the kernel) rather
than making it buffer. The agent holds at most one chunk per stream.

A stream answers only the reconciler that opened it (``BusClient.send_to``).
A stream whose reconciler has sent nothing (not even a credit keepalive) for
``idle_timeout`` seconds is closed: its reader stops, an exec's process group
is hung up and killed. The bus handler never blocks: it hands messages to
the session's green thread.
"""
import base64
import logging
import time

import eventlet
import eventlet.queue

from corral import names
from nodeagent import logs
from nodeagent.wakeup import Wakeup

log = logging.getLogger(__name__)

CHUNK_BYTES = logs.TEXT_BLOCK   # log lines per logs_chunk, at most about this many bytes (of whole lines)
FOLLOW_POLL = 0.1          # seconds between looks at a followed file that had nothing new
IDLE_TIMEOUT = 15.0        # seconds of silence from the reconciler after which a stream is closed
SEND_RETRY = 0.05          # seconds between tries of a send the bus could not take at once
INPUT_QUEUE = 64           # exec input chunks held per stream (the reconciler sends at most its window)
MAX_STREAMS = 256          # open streams per agent; more are refused with one sentence


class Window:
    """The sending side of a credit window: chunk ``seq`` may go while ``seq <= acked + size``."""

    def __init__(self, size):
        self.size = size
        self.sent = 0
        self.acked = 0
        self._room = Wakeup()

    def ack(self, seq):
        """The receiver consumed every chunk up to ``seq``."""
        if seq > self.acked:
            self.acked = min(seq, self.sent)
            self._room.ring()

    def has_room(self):
        """Whether the next chunk may go now."""
        return self.sent < self.acked + self.size

    def wait(self, timeout):
        """Sleep (green) until an ack may have made room, or ``timeout`` seconds."""
        self._room.wait(timeout)

    def take(self):
        """The seq of the next chunk (counted as sent)."""
        self.sent += 1
        return self.sent


class Channel:
    """One stream's transport: the credit window, sends to its reconciler, and what it hears."""

    def __init__(self, stream_id, endpoint, window, reply, clock, idle_timeout):
        self.id = stream_id
        self.endpoint = endpoint
        self.window = Window(window)
        self._reply = reply
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.heard = clock()
        self.closed = False
        self.ended = False
        self.inputs = eventlet.queue.LightQueue(maxsize=INPUT_QUEUE)  # exec: (seq, bytes, eof), in order
        self.next_input = 1
        self.size = None       # exec: the latest (rows, cols) asked for
        self.on_resize = None  # exec: (rows, cols) -> None, once the command runs
        self.on_close = None   # exec: hang up the command

    def put_input(self, seq, data, eof):
        """Queue stdin bytes for the command, even before it runs (a repeated seq is ignored);
        never blocks the bus handler."""
        if seq < self.next_input:
            return
        self.next_input = seq + 1
        try:
            self.inputs.put_nowait((seq, data, eof))
        except eventlet.queue.Full:
            log.warning("stream %s: input beyond the window was dropped", self.id)

    def resize(self, rows, cols):
        """Keep the asked terminal size and pass it on once the command runs."""
        self.size = (rows, cols)
        if self.on_resize is not None:
            self.on_resize(rows, cols)

    def stale(self):
        """True when the reconciler has been silent past the idle timeout."""
        return self._clock() - self.heard > self.idle_timeout

    def _send(self, type, body, attachment=None):
        body["stream"] = self.id
        while not self.closed:
            if self._reply(self.endpoint, type, body, attachment=attachment):
                return True
            if self.stale():
                self.close()
                break
            eventlet.sleep(SEND_RETRY)
        return False

    def emit(self, type, body, attachment=None):
        """Send one chunk (and its ``attachment``: the bytes of a logs_chunk) once the window has room;
        False when the stream was closed first."""
        while not self.closed and not self.window.has_room():
            if self.stale():
                log.info("stream %s: no word from its reconciler for %gs; closing it", self.id, self.idle_timeout)
                self.close()
                break
            self.window.wait(1.0)
        if self.closed:
            return False
        body["seq"] = self.window.take()
        return self._send(type, body, attachment)

    def emit_credit(self, ack):
        """Tell the reconciler that its input chunks up to ``ack`` are consumed (outside the window)."""
        return self._send("credit", {"ack": ack})

    def end(self, reason, error=False, exit_code=None):
        """Send the stream's last message (after every chunk, beyond the window by one) and forget it."""
        if self.ended:
            return
        self.ended = True
        body = {"reason": reason, "error": error, "exit_code": exit_code, "seq": self.window.take()}
        self._send("stream_end", body)
        self.closed = True

    def close(self):
        """The reconciler went away or asked to stop: stop sending, and hang up an exec."""
        if not self.closed:
            self.closed = True
            self.window.ack(self.window.sent)  # wake a sender waiting for room
            if self.on_close is not None:
                self.on_close()


class Streams:
    """Every stream of one agent. ``reply(endpoint, type, body, attachment=None) -> bool`` sends to one
    reconciler (:meth:`corral.wire.bus.BusClient.send_to`)."""

    types = frozenset({"logs_open", "exec_open", "credit", "exec_input", "exec_resize", "stream_close"})

    def __init__(self, agent, reply, clock=time.monotonic, idle_timeout=IDLE_TIMEOUT):
        self.agent = agent
        self.reply = reply
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.channels = {}
        self._reaper = None

    def on_message(self, endpoint, msg):
        """Bus handler for the stream types: open a session, or hand the message to its channel."""
        body = msg.body
        sid = body["stream"]
        if msg.type in ("logs_open", "exec_open"):
            if sid in self.channels:
                return  # a repeated open
            channel = Channel(sid, endpoint, body["window"], self.reply, self.clock, self.idle_timeout)
            bad = names.bad_instance_id(body["instance"])
            if bad:  # a log folder's path would be built from it: refused and counted
                counters = getattr(self.agent, "counters", None)
                if counters is not None:
                    counters["bad_id"] = counters.get("bad_id", 0) + 1
                log.warning("refused a %s from %s: %s", msg.type, getattr(msg, "sender", "?"), bad)
                eventlet.spawn(channel.end, f"node {self.agent.name} refused it: {bad}", True)
                return
            if len(self.channels) >= MAX_STREAMS:
                eventlet.spawn(channel.end, f"node {self.agent.name} has {MAX_STREAMS} streams open already; "
                                            "try again when one ends", True)
                return
            self.channels[sid] = channel
            eventlet.spawn(self._run, channel, msg.type, body)
            self._ensure_reaper()
            return
        channel = self.channels.get(sid)
        if channel is None or channel.endpoint != endpoint:
            return  # a late message of a stream that is over (or of another reconciler's)
        channel.heard = self.clock()
        if msg.type == "credit":
            channel.window.ack(body["ack"])
        elif msg.type == "exec_input":
            data = body.get("data")
            channel.put_input(body["seq"], base64.b64decode(data) if data else b"", bool(body.get("eof")))
        elif msg.type == "exec_resize":
            channel.resize(body["rows"], body["cols"])
        elif msg.type == "stream_close":
            channel.close()

    def _run(self, channel, type, body):
        try:
            if type == "logs_open":
                self._logs(channel, body)
            else:
                from nodeagent.exec import run_exec
                run_exec(channel, self.agent, body)
        except Exception as e:
            log.exception("stream %s failed", channel.id)
            channel.end(f"node {self.agent.name}: the stream failed ({e.__class__.__name__}: {e})", error=True)
        finally:
            channel.close()
            self.channels.pop(channel.id, None)

    def _ensure_reaper(self):
        if self._reaper is None or self._reaper.dead:
            self._reaper = eventlet.spawn(self._reap)

    def _reap(self):
        while self.channels:
            eventlet.sleep(1.0)
            for channel in list(self.channels.values()):
                if channel.stale():
                    log.info("stream %s: no word from its reconciler for %gs; closing it", channel.id,
                             self.idle_timeout)
                    channel.close()

    def close_all(self):
        """Close every stream (the agent is exiting)."""
        for channel in list(self.channels.values()):
            channel.close()

    # -- logs -----------------------------------------------------------------

    def _logs(self, channel, body):
        agent, iid = self.agent, body["instance"]
        snap = logs.Snapshot(agent.data_dir, iid)
        try:
            if not snap.exists and iid not in agent.instances:
                channel.end(f"instance {iid} has no log on node {agent.name}", error=True)
                return
            if not self._send_texts(channel, self._backlog(snap, body)):
                return
            if not channel.emit("logs_chunk", {"caught_up": True}):
                return
            if not body.get("follow") or body.get("previous"):
                channel.end("end of the log")
                return
            follower = snap.follower()
        finally:
            snap.close()
        try:
            self._follow(channel, iid, follower)
        finally:
            follower.close()

    @staticmethod
    def _backlog(snap, body):
        """The blocks of lines (bytes, each line ending in a newline) a logs_open asks for: raw blocks of
        the files (the last ``tail`` lines, or all; no work per line) unless it picks lines by time or
        run, which reads them line by line."""
        if body.get("since_seconds") is None and not body.get("previous"):
            return snap.blocks(tail=body.get("tail"), size=CHUNK_BYTES)
        since = None
        if body.get("since_seconds") is not None:
            since = logs.format_ts(time.time() - body["since_seconds"])
        source = snap.lines if body.get("previous") else snap.lines()
        lines = logs.select(source, tail=body.get("tail"), since=since, previous=bool(body.get("previous")))
        return _joined(lines, CHUNK_BYTES)

    @staticmethod
    def _send_texts(channel, blocks):
        for data in blocks:
            if not channel.emit("logs_chunk", {}, data):
                return False
        return True

    def _follow(self, channel, iid, follower):
        while not channel.closed:
            data = follower.poll_bytes(CHUNK_BYTES)
            if data:
                if not channel.emit("logs_chunk", {}, data):
                    return
                continue
            inst = self.agent.instances.get(iid)
            if inst is None or inst.gone or inst.finished:
                data = follower.poll_bytes(CHUNK_BYTES)
                if data:
                    if not channel.emit("logs_chunk", {}, data):
                        return
                    continue
                why = inst.message if inst is not None and inst.message else "stopped"
                channel.end(f"instance {iid} ended ({why})")
                return
            eventlet.sleep(FOLLOW_POLL)


def _joined(lines, size):
    """Blocks of about ``size`` bytes of ``lines`` (raw text), as UTF-8, each line ending in a newline."""
    batch, length = [], 0
    for raw in lines:
        batch.append(raw)
        length += len(raw) + 1
        if length >= size:
            yield ("\n".join(batch) + "\n").encode("utf-8")
            batch, length = [], 0
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")
