"""Reading an instance's log folder: tail, since, the previous run, follow across rotation, merge.

The files are written by the instance's capture process (``nodeagent.logshim``)
to this contract::

    <data_dir>/logs/<instance id>/output.log      the current file
    <data_dir>/logs/<instance id>/output.log.1    older, up to output.log.<keep - 1>
    each line: <RFC 3339 UTC time, microseconds> <out|err|sys> <text>

Rotation is by rename only, so a file this module holds open keeps its lines
to the end; :class:`Follower` notices a new inode at the path and moves on to
it once the old file is read out. A ``sys`` line ``run N started ...`` marks
each start of the process: the previous run is what lies between the last two.

A line that does not have the prefix (the plain ``<instance id>.log`` of
agents before the contract, or a torn line) is read as ``out`` with no time.

The folder belongs to the app's user, who may plant anything in it: every
file is opened by :func:`open_log`, which never follows a symlink, never
waits on a FIFO and reads only a regular file with one name (a hard link the
app made to another file is refused), so a reader running as root (the
agent, for ``corral logs``) reads nothing but the app's own lines. The
folders above the file are root's, so the last name is the only one the app
can swap.

No eventlet here: the ``corral logs`` command imports this module to parse
and merge what it receives. Pure functions, except those that open files.
"""
import collections
import dataclasses
import datetime
import errno
import heapq
import os
import re
import stat

CURRENT = "output.log"
READ_BLOCK = 64 * 1024
MAX_LINE = 64 * 1024   # a longer line (only a file without the contract can hold one) is cut here
TEXT_BLOCK = 256 * 1024   # bytes of whole lines per block of text (a logs_chunk), at most about this many

_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (out|err|sys) ?(.*)\Z", re.S)
_STARTED = re.compile(r"run \d+ started\b")


@dataclasses.dataclass(frozen=True)
class Line:
    """One log line: ``ts`` as written (RFC 3339, sorts as text) or None, its stream, its text."""

    ts: str | None
    stream: str
    text: str

    def raw(self):
        """The line as the contract writes it (no newline)."""
        return self.text if self.ts is None else f"{self.ts} {self.stream} {self.text}"


def parse_line(raw: str) -> Line:
    """The :class:`Line` of one line of a log file (its newline, if any, dropped)."""
    if raw.endswith("\n"):
        raw = raw[:-1]
    m = _LINE.match(raw)
    if m is None:
        return Line(None, "out", raw)
    return Line(m.group(1), m.group(2), m.group(3))


_HEADS = (b"Z out ", b"Z err ")   # what follows the time stamp of an app's line (bytes 26 to 31)


def has_note(data: bytes) -> bool:
    """Whether a block of lines may hold a ``sys`` line of corral's own (looked for in one scan)."""
    return b"Z sys " in data


def app_text(data: bytes, timestamps=False, head=b"") -> bytes:
    """A block of log lines (bytes, each line ending in a newline) as ``corral logs`` prints the app's
    output: each line's text, after its time when ``timestamps``, after ``head`` (the instance's
    prefix); a line without the contract's prefix as it is. Pure; for a block without ``sys``
    lines (:func:`has_note`). One slice per line, no parsing, no decoding: the capturer writes
    every line of a folder's files as UTF-8 with its 27-byte time stamp, a space, its stream and
    a space."""
    lines = data.split(b"\n")
    lines.pop()   # after the last newline
    if timestamps:
        lines = [raw[:27] + raw[31:] if raw[26:32] in _HEADS else raw for raw in lines]
    else:
        lines = [raw[32:] if raw[26:32] in _HEADS else raw for raw in lines]
    if not lines:
        return b""
    return head + (b"\n" + head).join(lines) + b"\n" if head else b"\n".join(lines) + b"\n"


def format_ts(seconds: float) -> str:
    """The contract's time stamp of ``seconds`` since the epoch: ``2026-11-26T15:20:38.123456Z``."""
    t = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_run_start(line: Line) -> bool:
    """True for the capturer's ``run N started`` marker."""
    return line.stream == "sys" and _STARTED.match(line.text) is not None


def log_paths(data_dir, instance_id):
    """``(current, rotated)`` paths of an instance's log, ``rotated`` oldest first.

    Falls back to the single ``<instance id>.log`` file of an agent that wrote
    no folder; ``current`` is then that file (and may not exist yet).
    """
    folder = os.path.join(data_dir, "logs", instance_id)
    legacy = os.path.join(data_dir, "logs", f"{instance_id}.log")
    if not os.path.isdir(folder) and os.path.exists(legacy):
        return legacy, []
    rotated = []
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names:
        suffix = name[len(CURRENT) + 1:]
        if name.startswith(CURRENT + ".") and suffix.isdigit():
            rotated.append((int(suffix), os.path.join(folder, name)))
    return os.path.join(folder, CURRENT), [p for _, p in sorted(rotated, reverse=True)]


def open_log(path):
    """``path`` opened for binary reading, only when it is a regular file with no other name; never
    through a symlink, never blocking on a FIFO. Raises OSError (ELOOP, or EINVAL for what is not
    such a file): callers treat the file as missing."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OSError(errno.EINVAL, f"{path} is not a log file of its own (a link, a FIFO or another name)")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def split_lines(buffer: bytes):
    """``(complete lines as text, the unfinished rest)`` of ``buffer``; long lines cut at MAX_LINE."""
    *whole, rest = buffer.split(b"\n")
    lines = [w[:MAX_LINE].decode("utf-8", errors="replace") for w in whole]
    if len(rest) > MAX_LINE:
        lines.append(rest[:MAX_LINE].decode("utf-8", errors="replace"))
        rest = b""
    return lines, rest


def cut_lines(buffer: bytes):
    """``(whole lines, the unfinished rest)`` of ``buffer``: the bytes up to and with its last newline,
    and those after it. A rest longer than MAX_LINE is cut there and given as a line of its own
    (a newline added), so that what is held back stays bounded and nothing is dropped."""
    cut = buffer.rfind(b"\n") + 1
    whole, rest = buffer[:cut], buffer[cut:]
    while len(rest) > MAX_LINE:
        whole += rest[:MAX_LINE] + b"\n"
        rest = rest[MAX_LINE:]
    return whole, rest


def text_of(data: bytes) -> str:
    """Log bytes as text: invalid UTF-8 replaced, never fatal."""
    return data.decode("utf-8", errors="replace")


def tail_start(files, n):
    """``(index, offset)`` in ``files`` (``[(binary file, end)]``, oldest first) where the last ``n``
    lines begin; a file's last line counts even without its newline. Reads backwards in blocks and
    holds one block: the memory of a tail of a million lines is that of one line."""
    if n <= 0:
        return len(files), 0
    need = n
    for index in range(len(files) - 1, -1, -1):
        f, end = files[index]
        if end <= 0:
            continue
        hi = end - 1   # a newline at the very end starts no line
        while hi > 0:
            lo = max(0, hi - READ_BLOCK)
            f.seek(lo)
            block = f.read(hi - lo)
            found = block.count(b"\n")
            if found >= need:
                at = len(block)
                for _ in range(need):
                    at = block.rfind(b"\n", 0, at)
                return index, lo + at + 1
            need -= found
            hi = lo
        need -= 1   # the file's first line
        if need == 0:
            return index, 0
    return 0, 0


def byte_blocks(files, start=(0, 0), size=TEXT_BLOCK):
    """Blocks of whole lines (bytes, each line ending in a newline) of ``files`` (``[(binary file,
    end)]``, oldest first) from ``start`` (``(index, offset)``, :func:`tail_start`), about ``size``
    bytes each. No work per line: the bytes are cut at a newline. A file's last line without a
    newline is given one."""
    index, offset = start
    block = b""
    for f, end in files[index:]:
        f.seek(offset)
        rest = b""
        while f.tell() < end:
            data = f.read(min(size, end - f.tell()))
            if not data:
                break
            whole, rest = cut_lines(rest + data)
            block += whole
            if len(block) >= size:
                yield block
                block = b""
        if rest:
            block += rest + b"\n"
        offset = 0
    if block:
        yield block


def _read_file(f, limit=None):
    """Every line of open binary file ``f`` from where it stands (up to byte ``limit``), as text."""
    rest = b""
    while True:
        want = READ_BLOCK if limit is None else min(READ_BLOCK, limit - f.tell())
        block = f.read(want) if want > 0 else b""
        if not block:
            break
        lines, rest = split_lines(rest + block)
        yield from lines
    if rest:
        yield rest.decode("utf-8", errors="replace")


class Snapshot:
    """An instance's log as it stands when opened: every file held open, so that a
    rotation while it is read neither loses nor repeats a line. :meth:`lines`
    reads it; :meth:`follower` continues after its end."""

    def __init__(self, data_dir, instance_id):
        self.current_path, rotated = log_paths(data_dir, instance_id)
        self.files = []
        for path in rotated:
            try:
                self.files.append(open_log(path))
            except OSError:
                pass  # rotated away between the listing and the open
        try:
            self.current = open_log(self.current_path)
            self.end = self.current.seek(0, os.SEEK_END)
            self.current.seek(0)
        except OSError:
            self.current, self.end = None, 0

    @property
    def exists(self):
        """Whether any file of the log was there."""
        return bool(self.files) or self.current is not None

    def lines(self):
        """Every line of the snapshot, oldest first (raw text)."""
        for f in self.files:
            f.seek(0)
            yield from _read_file(f)
        if self.current is not None:
            self.current.seek(0)
            yield from _read_file(self.current, self.end)

    def blocks(self, tail=None, size=TEXT_BLOCK):
        """The snapshot's lines (the last ``tail`` of them, or all) as blocks of bytes: :func:`byte_blocks`."""
        files = [(f, os.fstat(f.fileno()).st_size) for f in self.files]
        if self.current is not None:
            files.append((self.current, self.end))
        start = (0, 0) if tail is None else tail_start(files, tail)
        return byte_blocks(files, start, size)

    def follower(self):
        """A :class:`Follower` that starts right after the last line of the snapshot."""
        if self.current is not None:
            self.current.seek(self.end)
        follower = Follower(self.current_path, self.current)
        self.current = None
        return follower

    def close(self):
        """Close every file still held."""
        for f in self.files + ([self.current] if self.current else []):
            f.close()
        self.files, self.current = [], None


def select(lines, *, tail=None, since=None, previous=False):
    """The lines to show, in order: of the previous run only (``previous``), at or after
    time ``since`` (a contract time stamp), then the last ``tail`` of them.

    ``lines`` is an iterable of raw lines; the result is an iterator of raw lines
    that holds at most ``tail`` of them in memory (none when ``tail`` is None and
    ``previous`` is False). ``previous`` needs a re-iterable ``lines`` (a
    callable returning a fresh iterator), since it reads twice: once to find the
    markers, once to take the lines between the last two.
    """
    if previous:
        source = _previous_run(lines)
    else:
        source = lines() if callable(lines) else lines
    if since is not None:
        source = (raw for raw in source if (parse_line(raw).ts or since) >= since)
    if tail is not None:
        return iter(collections.deque(source, maxlen=max(0, tail)))
    return source


def _previous_run(lines):
    starts = [i for i, raw in enumerate(lines()) if is_run_start(parse_line(raw))]
    if len(starts) < 2:
        return iter(())
    first, last = starts[-2], starts[-1]
    return (raw for i, raw in enumerate(lines()) if first <= i < last)


class Follower:
    """Reads the lines appended to an instance's current log file, across rotations.

    ``poll(limit)`` returns the complete lines written since the last call
    (at most about ``limit`` bytes of them). When the file at the path is a new
    one (rotated), the old one is read to its end first. ``file`` may be None
    when the log does not exist yet: it is opened once it appears.
    """

    def __init__(self, path, file=None):
        self.path = path
        self.file = file
        self.inode = os.fstat(file.fileno()).st_ino if file is not None else None
        self.rest = b""

    def poll(self, limit=READ_BLOCK):
        """New complete lines (raw text, no newlines), oldest first; [] when nothing new."""
        return text_of(self.poll_bytes(limit)).split("\n")[:-1]

    def poll_bytes(self, limit=READ_BLOCK):
        """New complete lines as bytes, each line ending in a newline (at most about ``limit``
        bytes of them); b"" when nothing new. No work per line (:func:`cut_lines`)."""
        if self.file is None and not self._reopen():
            return b""
        block = self.file.read(limit)
        if not block:
            try:
                inode = os.lstat(self.path).st_ino
            except OSError:
                return b""
            if inode == self.inode:
                return b""
            whole = self.rest + self.file.read()  # rotated: what was written before the rename
            if whole and not whole.endswith(b"\n"):
                whole += b"\n"
            self.file.close()
            self.file = None
            self.rest = b""
            self._reopen()
            return whole
        whole, self.rest = cut_lines(self.rest + block)
        return whole

    def _reopen(self):
        try:
            self.file = open_log(self.path)
        except OSError:
            return False
        self.inode = os.fstat(self.file.fileno()).st_ino
        return True

    def close(self):
        """Close the file held."""
        if self.file is not None:
            self.file.close()
            self.file = None


def merge(streams):
    """Merge per-instance lists of ``(key, Line)`` into one list in time order.

    Each stream is in its own time order already; lines without a time stamp
    keep their place in their stream (they sort with the line before them).
    Pure.
    """
    keyed = []
    for key, lines in streams:
        last = ""
        out = []
        for line in lines:
            last = line.ts or last
            out.append((last, key, line))
        keyed.append(out)
    return [(key, line) for _, key, line in heapq.merge(*keyed, key=lambda item: item[0])]
