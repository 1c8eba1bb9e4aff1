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

It runs with a fixed environment of its own (:data:`SHIM_ENV`, set by
the agent) and in ``-I`` mode: nothing an app author controls (``env`` of
the spec: ``LD_PRELOAD``, ``PYTHONPATH``, ``PATH``...) reaches it while it
may still be root. The app's env and working folder come as one JSON object
``{"env": {...}, "cwd": "..."}`` on its stdin (an unlinked file or memfd the
agent wrote: never argv, which every user reads in ``/proc/*/cmdline``, and
never a path an app could swap), read to its end at start; they are applied
only in the app's child, right before exec and after the identity change.

Before anything else, as root, it enters the instance's mount namespace when
the agent sent its steps (:mod:`nodeagent.sandbox`: a private ``/tmp``, the
agent's folders hidden, the image read-only); every run inherits it. A step
that fails is the run's ``could not start`` line: an instance never runs less
contained than its node says.

The child, in order: moves itself into each cgroup of ``--cgroup`` (a
``cgroup.procs`` path), so the app and all it starts are born inside them
while the capture process stays out (the OOM killer never picks it, its
memory and pids are not counted against the app's limits); with
``--uid``/``--gid`` drops every capability from its bounding set and becomes
that user with no supplementary groups; sets ``PR_SET_NO_NEW_PRIVS`` (always);
changes to the app's folder; execs with the app's env. The capture process
drops to the user too, right after the start and before it touches a file:
no process of an instance keeps root, and every file it opens in the log
folder (which the app owns) is opened relative to the folder's fd with
``O_NOFOLLOW|O_NONBLOCK`` as that user: a symlink or a FIFO the app planted
there is replaced, never followed.

Writes never block the app for long: a write that fails (a full disk)
drops the line and counts it, and the count is written as a ``sys`` line
once a write works again. The app blocks only while its pipe is full, which
lasts as long as one disk write.

It imports little on purpose: one runs beside every instance.
"""
# Everything is imported here, never where used: once it runs as the app's user the shim may
# not read its own interpreter's folder (root's), so nothing may be imported after the start.
# Nothing heavy either, one runs beside every instance: nodeagent.identity's become() is the same
# step, but importing it (dataclasses, re) costs 1.5 MiB more in each capture process (measured).
import ctypes
import errno
import json
import os
import select
import signal
import stat
import sys
import time

from nodeagent import sandbox

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
ERR_FILE = "capture.err"  # the capture process's own errors (never the app's output), in its log folder
CURRENT = "output.log"
SHIM_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}   # the capture process's whole env, whatever the app's
SPEC_LIMIT = 16 << 20     # bytes of the JSON on stdin at most
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
# opening a name in the app's folder: never through a symlink, never waiting on a FIFO, never inherited
SAFE_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

try:
    _libc = ctypes.CDLL(None, use_errno=True)   # loaded before any fork or drop: the child only calls it
except OSError:
    _libc = None


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
    ``(src, dst)``, ``dst`` None for a delete (pure). keep=3: delete .2, .1 -> .2, output.log -> .1.
    ``folder`` "" gives names relative to the folder."""
    base = os.path.join(folder, CURRENT)
    if keep <= 1:
        return [(base, None)]
    steps = [(f"{base}.{keep - 1}", None)]
    for n in range(keep - 2, 0, -1):
        steps.append((f"{base}.{n}", f"{base}.{n + 1}"))
    steps.append((base, f"{base}.1"))
    return steps


def open_folder(folder):
    """An fd of the log folder ``folder`` itself (never a symlink in its place), for the ``*at`` calls."""
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _remove(dir_fd, name):
    """Delete entry ``name`` of the folder, whatever it is (a planted symlink, FIFO, hard link, empty folder)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except IsADirectoryError:
        os.rmdir(name, dir_fd=dir_fd)
    except (FileNotFoundError, PermissionError) as e:
        if isinstance(e, PermissionError):  # EPERM of unlink on a folder (Linux answers EISDIR, BSDs EPERM)
            os.rmdir(name, dir_fd=dir_fd)


def open_append(dir_fd, name, mode=0o640):
    """An fd appending to the regular file ``name`` of the folder, created when missing. Whatever
    else is there (a symlink, a FIFO, a hard link with another name, a folder) is deleted and the
    file made anew: it is never followed, written through or waited on. Raises OSError."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | SAFE_OPEN
    for _ in range(3):
        try:
            fd = os.open(name, flags, mode, dir_fd=dir_fd)
        except OSError as e:
            # ELOOP: a symlink; ENXIO: a FIFO nobody reads; EISDIR: a folder; ENODEV/ETXTBSY: the odd rest
            if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.ETXTBSY,
                               errno.EWOULDBLOCK):
                raise
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                return fd
            os.close(fd)
        _remove(dir_fd, name)
    raise OSError(errno.EEXIST, f"{name} is replaced again each time it is made")


class LogFile:
    """``<folder>/output.log``, rotated by rename before a write would take it past ``max_bytes``.

    Every name is opened, renamed and deleted relative to the folder's fd
    (``dir_fd``, opened from ``folder`` when not given) and never followed
    (:func:`open_append`). A write that fails (ENOSPC) is undone (the file
    is cut back to its size before it), so the file holds only whole lines;
    the line counts as dropped.
    """

    def __init__(self, folder, max_bytes, keep, dir_fd=None):
        self.folder = folder
        self.max_bytes = max_bytes
        self.keep = keep
        self.dir_fd = dir_fd
        self.fd = None
        self.size = 0
        self.dropped = 0

    def _open(self):
        if self.dir_fd is None:
            self.dir_fd = open_folder(self.folder)
        self.fd = open_append(self.dir_fd, CURRENT)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self):
        os.close(self.fd)
        self.fd = None
        for src, dst in rotation_renames("", self.keep):
            try:
                if dst is None:
                    _remove(self.dir_fd, src)
                else:
                    os.rename(src, dst, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            except OSError:  # a folder planted at a rotated name: out of the way, the rotation goes on
                try:
                    _remove(self.dir_fd, dst or src)
                except OSError:
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


def next_run(dir_fd):
    """The next run number of the instance whose log folder is ``dir_fd``: one more than the last
    (kept in :data:`RUNS_FILE`, written atomically), 1 at first, and 1 again when what is there is
    not a regular file holding a number (it is then replaced). Never follows a symlink there."""
    last = 0
    try:
        fd = os.open(RUNS_FILE, os.O_RDONLY | SAFE_OPEN, dir_fd=dir_fd)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                last = int(os.read(fd, 32).strip() or 0)
        finally:
            os.close(fd)
    except (OSError, ValueError):
        last = 0
    run = last + 1
    tmp = f"{RUNS_FILE}.tmp-{os.getpid()}"
    try:
        _remove(dir_fd, tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_OPEN, 0o640, dir_fd=dir_fd)
        try:
            os.write(fd, str(run).encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, RUNS_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
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
                         "[--uid U --gid G] [--cgroup PROCS]... -- ARGV...  "
                         "(the app's {\"env\": ..., \"cwd\": ..., \"sandbox\": ...} as JSON on stdin)")
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


def read_spec(fd=0):
    """The app's ``(env, cwd, sandbox)`` from the JSON object on ``fd`` (read to its end; ``{}``
    when empty): env None keeps the capture process's own; sandbox, the steps of
    :func:`nodeagent.sandbox.plan` (None: none). ValueError when it is not that."""
    data = b""
    while len(data) <= SPEC_LIMIT:
        try:
            chunk = os.read(fd, 65536)
        except OSError:   # no stdin at all: the same as an empty one
            break
        if not chunk:
            break
        data += chunk
    if len(data) > SPEC_LIMIT:
        raise ValueError(f"logshim: the app's env on stdin is over {SPEC_LIMIT} bytes")
    spec = json.loads(data or b"{}")
    if not isinstance(spec, dict):
        raise ValueError("logshim: stdin must hold a JSON object")
    env, cwd, steps = spec.get("env"), spec.get("cwd"), spec.get("sandbox")
    if (env is not None and not (
            isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()))) \
            or (cwd is not None and not isinstance(cwd, str)) \
            or (steps is not None and not (isinstance(steps, list) and all(
                isinstance(step, list) and step and all(isinstance(x, str) for x in step) for step in steps))):
        raise ValueError("logshim: stdin must hold {\"env\": {name: value}, \"cwd\": folder, "
                         "\"sandbox\": [[step, path...]...]}")
    return env, cwd, steps


def cap_last():
    """The highest capability number this kernel knows (``/proc/sys/kernel/cap_last_cap``; 40 if unread)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def _drop_bounding_set(last):
    """Drop every capability up to ``last`` from the bounding set: nothing run later can get one back."""
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def _spawn(app, out_w, err_w, uid, gid, cgroups=(), env=None, cwd=None, last_cap=40):
    """Fork and exec the app with stdout/stderr on the pipes; returns its pid. In the child, in this
    order: join ``cgroups``; with ``uid``/``gid``
    no capability in the bounding set and that user with no supplementary groups; no_new_privs (always);
    ``cwd``; exec with ``env`` (searching ``argv[0]`` on its PATH). Raises :class:`StartError` when a
    step before or at exec fails (the child reports its errno and the step through a close-on-exec pipe)."""
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
            for s in RELAYED + (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(s, signal.SIG_DFL)   # SIGPIPE and SIGXFSZ: Python ignores them, an app must not
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for procs in cgroups:
                step = f"joining cgroup {os.path.dirname(procs)}"
                with open(procs, "w", encoding="ascii") as f:
                    f.write(str(os.getpid()))
            if uid is not None:
                step = f"becoming uid {uid} gid {gid}"
                _drop_bounding_set(last_cap)
                drop_privileges(uid, gid)
            else:
                step = "setting no_new_privs"
                no_new_privs()
            if cwd is not None:
                step = f"changing to {cwd}"
                os.chdir(cwd)
            step = "exec"
            if env is None:
                os.execvp(app[0], app)
            os.execvpe(app[0], app, env)
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


def no_new_privs():
    """Set ``PR_SET_NO_NEW_PRIVS`` (inherited, never cleared): no setuid program or file capability
    gives a privilege back. Raises OSError when the kernel refuses it."""
    if _libc is None:
        raise OSError(errno.ENOSYS, "prctl is not available")
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def drop_privileges(uid, gid):
    """Become ``uid``/``gid`` with no supplementary groups and no new privileges, for good (the steps
    of :func:`nodeagent.identity.become`). Raises OSError at the first step that fails."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    no_new_privs()


def _errors_to_folder(dir_fd):
    """From now on the capture process's own errors go to :data:`ERR_FILE` in its folder (opened as it
    is now, never followed), or nowhere when that cannot be had."""
    try:
        fd = open_append(dir_fd, ERR_FILE) if dir_fd is not None else os.open(os.devnull, os.O_WRONLY)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 2)
    os.close(fd)


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


def run(opts, app, env=None, cwd=None, steps=None):
    """Run the app under capture until it exits, with ``env`` and in ``cwd``, in the mount namespace
    that ``steps`` make (:mod:`nodeagent.sandbox`; none when None); returns its ``waitpid`` status."""
    folder = opts["dir"]
    os.makedirs(folder, exist_ok=True)
    last_cap = cap_last()
    _become_subreaper()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda sig, frame: None)
    relay = Relay()
    for s in RELAYED:
        signal.signal(s, relay)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        if steps is not None:
            try:
                sandbox.enter(steps)
            except sandbox.SandboxError as e:
                raise StartError(e.errno, e.step) from None
        pid, failed = _spawn(app, out_w, err_w, opts["uid"], opts["gid"], opts["cgroup"], env, cwd,
                             last_cap), None
    except StartError as e:
        pid, failed = None, e
    finally:
        os.close(out_w)
        os.close(err_w)
    if opts["uid"] is not None:
        drop_privileges(opts["uid"], opts["gid"])
    # from here on as the app's user: the folder is the app's, and nothing in it is followed
    try:
        dir_fd = open_folder(folder)
    except OSError as e:
        sys.stderr.write(f"logshim: the log folder {folder} cannot be opened ({e.strerror})\n")
        dir_fd = None
    _errors_to_folder(dir_fd)
    number = next_run(dir_fd) if dir_fd is not None else 1
    log = LogFile(folder, opts["max_bytes"], max(1, opts["keep"]), dir_fd=dir_fd)
    if failed is not None:
        log.write([("sys", f"run {number} could not start {app[0]!r}: {failed.reason()}".encode())], time.time_ns())
        return 127 << 8
    log.write([("sys", f"run {number} started pid {pid}".encode())], time.time_ns())
    status = _capture(pid, {out_r: "out", err_r: "err"}, wake_r, log)
    log.write([("sys", f"run {number} exited {how_it_ended(status)}".encode())], time.time_ns())
    _reap(None)
    return status


def _capture(pid, pipes, wake_r, log):
    """Write the lines of ``pipes`` (fd -> stream name) into ``log`` until both end and the app
    ``pid`` has exited (at most ``DRAIN_AFTER_EXIT`` after its exit: a child that kept them open
    does not hold the run open); a partial line waits ``PARTIAL_WAIT``. Returns its wait status."""
    streams = {fd: (name, Framer()) for fd, name in pipes.items()}
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
        env, cwd, steps = read_spec(0)
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    exit_like(run(opts, app, env, cwd, steps))


if __name__ == "__main__":
    sys.exit(main())
