"""Writing a verified layer archive into a new folder, exactly as :func:`nodeagent.tarscan.members` decided.

This module reads no header: every member it writes is one the scanner
yielded, so what was checked is what is written. It adds a second line of
its own, independent of the scanner's bookkeeping: every folder is opened
relative to its parent's descriptor with ``O_NOFOLLOW | O_DIRECTORY``, and
every file, link and folder is created with an exclusive create
(``O_EXCL``, ``mkdir``, ``symlink``, ``link``), so nothing is written
through a symbolic link or over an existing name, whatever the archive says.

What comes out: files and folders owned by whoever unpacks (root on a
production node: never an id from the archive), folders 0755, files 0755
when the member had any execute bit and 0644 otherwise (readable and, for
programs, runnable by every app user; writable by the owner only; no set-id
bit, which the scanner refuses anyway); the members' modification times
(a venv's bytecode is checked against its source's mtime); symbolic links
with their targets as archived. No extended attribute, owner, or time other
than mtime is applied. The folder itself is 0700 until it is whole, so no
other user sees a half-made layer.
"""
import errno
import os
import time

from nodeagent.tarscan import members

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIRS = 256          # folder descriptors kept open at most
_COPY_STEP = 8 << 20      # bytes copied between two chances for other green threads to run
_YIELD_EVERY = 0.01       # seconds of work between two such chances


def extract(archive_fd, length, dest):
    """Write the members of the tar archive (``length`` bytes, open at ``archive_fd``) into the folder
    ``dest``, which must not exist yet; return the number of members.

    Raises :class:`nodeagent.tarscan.UnsafeLayer` (one sentence naming the
    member) for an archive that may not be unpacked, OSError for one that
    cannot be written; either way ``dest`` is left half made for the caller
    to remove. Gives other green threads a turn every 10 ms (``time.sleep(0)``
    is a yield under eventlet), so a large layer does not stop the agent's
    heartbeats.
    """
    os.mkdir(dest, 0o700)
    root = os.open(dest, _DIR_FLAGS)
    folders = _Folders(root)
    dir_times, count, turn = [], 0, time.monotonic() + _YIELD_EVERY
    try:
        for member in members(lambda offset, n: os.pread(archive_fd, n, offset), length):
            count += 1
            folders.trim()
            parts = member.name.split("/") if member.name else []
            if member.kind == "dir":
                if parts:
                    folders.make(parts)
                dir_times.append((parts, member.mtime_ns))
            else:
                parent, leaf = folders.get(parts[:-1]), parts[-1]
                if member.kind == "file":
                    _write_file(archive_fd, member, parent, leaf)
                elif member.kind == "symlink":
                    os.symlink(member.linkname, leaf, dir_fd=parent)
                else:
                    target = member.linkname.split("/")
                    os.link(target[-1], leaf, src_dir_fd=folders.get(target[:-1]), dst_dir_fd=parent,
                            follow_symlinks=False)
            if time.monotonic() >= turn:
                time.sleep(0)
                turn = time.monotonic() + _YIELD_EVERY
        for parts, mtime_ns in dir_times:   # last: making entries in a folder changes its mtime
            folders.trim()
            os.utime(folders.get(parts), ns=(mtime_ns, mtime_ns))
        os.fchmod(root, 0o755)
        return count
    finally:
        folders.close_all()


def _write_file(archive_fd, member, parent, leaf):
    fd = os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=parent)
    try:
        _copy(archive_fd, fd, member.offset, member.size)
        os.fchmod(fd, 0o755 if member.mode & 0o111 else 0o644)
        os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))
    finally:
        os.close(fd)


_copy_file_range = getattr(os, "copy_file_range", None)


def _copy(src, dst, offset, size):
    """Copy ``size`` bytes at ``offset`` of ``src`` to the start of ``dst``, in the kernel where it can."""
    global _copy_file_range
    done = 0
    while done < size:
        step = min(size - done, _COPY_STEP)
        n = 0
        if _copy_file_range is not None:
            try:
                n = _copy_file_range(src, dst, step, offset + done)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                _copy_file_range = None   # this kernel or file system cannot: plain reads from now on
                continue
        else:
            data = os.pread(src, step, offset + done)
            n = os.write(dst, data) if data else 0
        if n <= 0:
            raise OSError(errno.EIO, "the archive ended inside a member")
        done += n
        if done < size:
            time.sleep(0)


class _Folders:
    """Descriptors of the layer's folders by path parts, each opened from its parent without following links."""

    def __init__(self, root):
        self.root = root
        self.open = {}

    def get(self, parts):
        """The descriptor of the folder at ``parts``; folders not made yet are made (0755) on the way."""
        if not parts:
            return self.root
        key = tuple(parts)
        fd = self.open.get(key)
        if fd is None:
            parent = self.get(parts[:-1])
            try:
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
                os.fchmod(fd, 0o755)
            self.open[key] = fd
        return fd

    def make(self, parts):
        """Make the folder at ``parts`` (0755), or keep the one already there."""
        self.get(parts)

    def trim(self):
        """Close the descriptors kept once there are too many; call between members only, so that
        none a member is being written with goes."""
        if len(self.open) >= _OPEN_DIRS:
            self.close()

    def close(self):
        """Close every descriptor but the root's, which the caller closes last."""
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()

    def close_all(self):
        self.close()
        os.close(self.root)
