"""The per-instance capture process: ``python -I -m nodeagent.logshim [options] -- ARGV...``.

It is the instance's process group leader and the app's parent. It reads the
app's stdout and stderr through pipes of its own (never through the agent,
which may restart at any time), stamps each line and appends it to
``<dir>/output.log``, rotating by rename (see nodeagent/README.md, "Logs",
for the file contract that readers rely on). It writes a ``sys`` line at the
start and at the end of each run, relays SIGTERM, SIGINT, SIGHUP and SIGQUIT
to its whole group exactly once, and exits the way the app did (its exit
code, or killed by its signal), so whoever waits on the leader sees the
app's status.

Its env and working folder are the app's: it execs ARGV with them. The
app's process moves itself into each cgroup of ``--cgroup`` (a
``cgroup.procs`` path) before exec, so the app and all it starts are born
inside them while the capture process stays out: the kernel's OOM killer
never picks it, it records how the app ended, and its memory is not
counted against the app's limit. With ``--uid``/``--gid`` the app runs as
that user, and the capture process drops to it too, right after the start,
before it writes a line: no process of an instance keeps root.

Writes never block the app for long: a write that fails (a full disk)
drops the line and counts it, and the count is written as a ``sys`` line
once a write works again. The app blocks only while its pipe is full, which
lasts as long as one disk write.

It imports little on purpose: one runs beside every instance.
"""
# Everything is imported here, never where used: once it runs as the app's user the shim may
# not read its own interpreter's folder (root's), so nothing may be imported after the start.
import ctypes
import errno
import os
import select
import signal
import sys
import time

try:
    import resource
except ImportError:  # not on every platform; only used to skip a core dump
    resource = None

MAX_LINE = 16 * 1024      # bytes of text per log line; a longer line is cut into several
READ_SIZE = 64 * 1024     # bytes read from a pipe at once
PARTIAL_WAIT = 1.0        # seconds a line without its newline waits before it is written as it is
DRAIN_AFTER_EXIT = 1.0    # seconds to keep reading after the app exits, while others still hold its pipes
RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
RUNS_FILE = ".runs"       # the last run number of the instance, in its log folder
PR_SET_CHILD_SUBREAPER = 36


def stamp(ns):
    """``ns`` (nanoseconds since the epoch) as RFC 3339 UTC with microseconds: ``2026-11-26T15:20:38.123456Z``."""
    sec, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{rest // 1000:06d}Z"


def log_line(ns, stream, text):
    """One log line: ``<stamp> <stream> <text>\\n`` as bytes; ``text`` is bytes, decoded with errors replaced."""
    return f"{stamp(ns)} {stream} {text.decode('utf-8', 'replace')}\n".encode("utf-8")


def utf8_cut(data, limit):
    """Where to cut ``data`` at most ``limit`` bytes in without splitting a UTF-8 character (pure)."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    # step back over continuation bytes (10xxxxxx), at most 3, to the start of a character
    while cut > limit - 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if (data[cut] & 0xC0) != 0x80 else limit


class Framer:
    """Cuts one stream's bytes into text lines of at most :data:`MAX_LINE` bytes (pure)."""

    def __init__(self, limit=MAX_LINE):
        self.limit = limit
        self.buf = b""
        self.since = None   # when the pending partial line began (whatever clock the caller uses)

    def feed(self, data, now=0.0):
        """The whole lines completed by ``data`` (without their newline); the rest waits."""
        if not self.buf:
            self.since = now
        self.buf += data
        out = []
        while True:
            nl = self.buf.find(b"\n", 0, self.limit + 1)
            if nl >= 0:
                out.append(self.buf[:nl])
                self.buf = self.buf[nl + 1:]
            elif len(self.buf) > self.limit:
                cut = utf8_cut(self.buf, self.limit)
                out.append(self.buf[:cut])
                self.buf = self.buf[cut:]
            else:
                break
        if self.buf and out:
            self.since = now
        return out

    def flush(self):
        """The pending partial line as a list of zero or one line, and forget it."""
        out, self.buf, self.since = ([self.buf] if self.buf else []), b"", None
        return out


def rotation_renames(folder, keep):
    """The renames that rotate ``output.log`` keeping ``keep`` files in all, oldest first: a list of
    ``(src, dst)``, ``dst`` None for a delete (pure). keep=3: delete .2, .1 -> .2, output.log -> .1."""
    base = os.path.join(folder, "output.log")
    if keep <= 1:
        return [(base, None)]
    steps = [(f"{base}.{keep - 1}", None)]
    for n in range(keep - 2, 0, -1):
        steps.append((f"{base}.{n}", f"{base}.{n + 1}"))
    steps.append((base, f"{base}.1"))
    return steps


class LogFile:
    """``<folder>/output.log``, rotated by rename before a write would take it past ``max_bytes``.

    A write that fails (ENOSPC) is undone (the file is cut back to its size
    before it), so the file holds only whole lines; the line counts as dropped.
    """

    def __init__(self, folder, max_bytes, keep):
        self.folder = folder
        self.max_bytes = max_bytes
        self.keep = keep
        self.path = os.path.join(folder, "output.log")
        self.fd = None
        self.size = 0
        self.dropped = 0

    def _open(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self):
        os.close(self.fd)
        self.fd = None
        for src, dst in rotation_renames(self.folder, self.keep):
            try:
                if dst is None:
                    os.unlink(src)
                else:
                    os.rename(src, dst)
            except FileNotFoundError:
                pass
        self._open()

    def _append(self, data):
        """Append ``data`` whole, or undo the part written and raise OSError."""
        if self.fd is None:
            self._open()
        start = self.size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.size += n
        except OSError:
            if self.size != start:
                try:
                    os.ftruncate(self.fd, start)
                except OSError:
                    pass
                self.size = start
            raise

    def _write(self, encoded):
        """Append the encoded lines, rotating before the line that would take the file past ``max_bytes``."""
        if self.fd is None:
            self._open()
        chunk, length = [], 0
        for line in encoded:
            if self.size + length + len(line) > self.max_bytes and (chunk or self.size):
                if chunk:
                    self._append(b"".join(chunk))
                    chunk, length = [], 0
                self._rotate()
            chunk.append(line)
            length += len(line)
        if chunk:
            self._append(b"".join(chunk))

    def write(self, lines, ns):
        """Append ``lines`` (a list of ``(stream, text bytes)``) stamped ``ns``; returns False when dropped."""
        encoded = [log_line(ns, stream, text) for stream, text in lines]
        try:
            if self.dropped:
                self._write([log_line(ns, "sys", f"{self.dropped} lines dropped: the log could not be written".encode())])
                self.dropped = 0
            self._write(encoded)
            return True
        except OSError:
            self.dropped += len(lines)
            if self.fd is not None:
                try:
                    os.close(self.fd)
                except OSError:
                    pass
                self.fd = None
            return False


def next_run(folder):
    """The next run number of the instance whose log folder is ``folder``: one more than the last
    (kept in :data:`RUNS_FILE`, written atomically), 1 at first."""
    path = os.path.join(folder, RUNS_FILE)
    try:
        with open(path, encoding="ascii") as f:
            last = int(f.read().strip() or 0)
    except (OSError, ValueError):
        last = 0
    run = last + 1
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(run))
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return run


def how_it_ended(status):
    """The end of a ``run N exited ...`` line for a ``waitpid`` status (pure)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"(killed by {name})"
    return f"with code {os.WEXITSTATUS(status)}"


def parse_args(argv):
    """Options and the app's argv from the shim's command line; ValueError naming what is wrong."""
    opts = {"dir": None, "max_bytes": 10 * 1024 * 1024, "keep": 3, "uid": None, "gid": None, "cgroup": []}
    i = 0
    while i < len(argv) and argv[i] != "--":
        name = argv[i]
        if i + 1 >= len(argv):
            raise ValueError(f"logshim: option {name} needs a value")
        value = argv[i + 1]
        if name == "--dir":
            opts["dir"] = value
        elif name in ("--max-bytes", "--keep", "--uid", "--gid"):
            opts[name[2:].replace("-", "_")] = int(value)
        elif name == "--cgroup":
            opts["cgroup"].append(value)
        else:
            raise ValueError(f"logshim: unknown option {name}")
        i += 2
    app = argv[i + 1:]
    if (opts["uid"] is None) != (opts["gid"] is None):
        raise ValueError("logshim: --uid and --gid go together")
    if not opts["dir"] or not app:
        raise ValueError("logshim: usage: python -m nodeagent.logshim --dir DIR [--max-bytes N] [--keep K] "
                         "[--uid U --gid G] [--cgroup PROCS]... -- ARGV...")
    return opts, app


def _become_subreaper():
    """Make the shim the reaper of the app's orphans, so none stays a zombie, whoever the agent is."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class StartError(OSError):
    """The app could not be started: ``errno`` and ``strerror`` of the failed step, ``step`` naming it."""

    def __init__(self, code, step):
        super().__init__(code, os.strerror(code))
        self.step = step

    def reason(self):
        """The reason as the ``could not start`` line says it."""
        return self.strerror if self.step == "exec" else f"{self.step}: {self.strerror}"


def _spawn(app, out_w, err_w, uid, gid, cgroups=()):
    """Fork and exec the app with stdout/stderr on the pipes, inside ``cgroups`` and as ``uid``/``gid``
    when given; returns its pid. Raises :class:`StartError` when a step before or at exec fails (the
    child reports its errno and the step through a close-on-exec pipe)."""
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        step = "exec"
        try:
            os.close(status_r)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for s in RELAYED + (signal.SIGCHLD,):
                signal.signal(s, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for procs in cgroups:
                step = f"joining cgroup {os.path.dirname(procs)}"
                with open(procs, "w", encoding="ascii") as f:
                    f.write(str(os.getpid()))
            if uid is not None:
                step = f"becoming uid {uid} gid {gid}"
                drop_privileges(uid, gid)
            step = "exec"
            os.execvp(app[0], app)
        except OSError as e:
            os.write(status_w, f"{e.errno or errno.EIO} {step}".encode("utf-8", "replace"))
        finally:
            os._exit(127)
    os.close(status_w)
    try:
        report = b""
        while True:
            chunk = os.read(status_r, 4096)
            if not chunk:
                break
            report += chunk
    finally:
        os.close(status_r)
    if report:
        os.waitpid(pid, 0)
        code, _, step = report.decode("utf-8", "replace").partition(" ")
        raise StartError(int(code), step)
    return pid


def drop_privileges(uid, gid):
    """Become ``uid``/``gid`` with no supplementary groups, for good."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


class Relay:
    """Relays a signal the shim receives to its whole group, once: the copy it sends itself is consumed."""

    def __init__(self):
        self.received = []

    def __call__(self, sig, frame):
        self.received.append(sig)
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
        try:
            os.killpg(0, sig)
            signal.sigtimedwait({sig}, 0)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})


def run(opts, app):
    """Run the app under capture until it exits; returns its ``waitpid`` status."""
    folder = opts["dir"]
    os.makedirs(folder, exist_ok=True)
    log = LogFile(folder, opts["max_bytes"], max(1, opts["keep"]))
    _become_subreaper()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda sig, frame: None)
    relay = Relay()
    for s in RELAYED:
        signal.signal(s, relay)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    number = next_run(folder)
    try:
        pid, failed = _spawn(app, out_w, err_w, opts["uid"], opts["gid"], opts["cgroup"]), None
    except StartError as e:
        pid, failed = None, e
    finally:
        os.close(out_w)
        os.close(err_w)
    if opts["uid"] is not None:
        drop_privileges(opts["uid"], opts["gid"])
    if failed is not None:
        log.write([("sys", f"run {number} could not start {app[0]!r}: {failed.reason()}".encode())], time.time_ns())
        return 127 << 8
    log.write([("sys", f"run {number} started pid {pid}".encode())], time.time_ns())
    streams = {out_r: ("out", Framer()), err_r: ("err", Framer())}
    poller = select.poll()
    for fd in streams:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    status, ended = None, None
    while streams and (ended is None or time.monotonic() < ended + DRAIN_AFTER_EXIT):
        now = time.monotonic()
        waits = [f.since + PARTIAL_WAIT - now for _, f in streams.values() if f.buf]
        if ended is not None:
            waits.append(ended + DRAIN_AFTER_EXIT - now)
        timeout = max(0, int(min(waits) * 1000) + 1) if waits else None
        events = poller.poll(timeout)
        now = time.monotonic()
        lines = []
        for fd, _ in events:
            if fd == wake_r:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                continue
            name, framer = streams[fd]
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            if data:
                lines.extend((name, text) for text in framer.feed(data, now))
            else:
                lines.extend((name, text) for text in framer.flush())
                poller.unregister(fd)
                os.close(fd)
                del streams[fd]
        for name, framer in streams.values():
            if framer.buf and now - framer.since >= PARTIAL_WAIT:
                lines.extend((name, text) for text in framer.flush())
        if lines:
            log.write(lines, time.time_ns())
        if status is None:
            status = _reap(pid)
            if status is not None:
                ended = time.monotonic()
    for name, framer in streams.values():
        tail = framer.flush()
        if tail:
            log.write([(name, t) for t in tail], time.time_ns())
    while status is None:
        status = _reap(pid, block=True)
    log.write([("sys", f"run {number} exited {how_it_ended(status)}".encode())], time.time_ns())
    _reap(None)
    return status


def _reap(app_pid, block=False):
    """Collect exited children (the app's orphans included); the app's status once it has ended, else None."""
    found = None
    flags = 0 if block else os.WNOHANG
    while True:
        try:
            pid, status = os.waitpid(-1, flags)
        except ChildProcessError:
            return found
        except InterruptedError:
            continue
        if pid == 0:
            return found
        if pid == app_pid:
            found = status
            flags = os.WNOHANG


def exit_like(status):
    """End this process the way the app ended: the same exit code, or the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:
            try:
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (AttributeError, ValueError, OSError):
                pass
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


def main(argv=None):
    """Entry point of ``python -m nodeagent.logshim``."""
    try:
        opts, app = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    exit_like(run(opts, app))


if __name__ == "__main__":
    sys.exit(main())
