"""Files and folders that hold secrets: the cluster key, the store, backups, the agent's state.

Secrets on disk are files of mode 0600 in folders that others may at most pass
(0700, or 0711 where an app user must reach a folder of its own inside, such as
the agent's ``logs/<id>``): another user can neither list the folder nor read
the file, whatever name it guesses.

A file is replaced atomically through a temporary name that nobody else can
have prepared: created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a file or link
planted at that name makes the write fail rather than follow it), mode 0600
from its first byte, with a random suffix, then fsynced and renamed over the
old one; the folder is fsynced after. A crash or a full disk leaves the old
file or the new one, never half, and never a readable copy.
"""
import os
import secrets
import stat

FILE_MODE = 0o600
DIR_MODE = 0o700


def tighten_dir(path, mode=DIR_MODE):
    """Make the folder ``path`` (created with ``mode`` when missing) grant group and others at most
    what ``mode`` grants; its owner's bits are kept. Returns its mode afterwards.

    A folder that grants less than ``mode`` is left as it is (an operator's 0700 stays 0700).
    Only the owner (or root) can change the mode: anyone else gets PermissionError.
    """
    os.makedirs(path, mode=mode, exist_ok=True)
    current = stat.S_IMODE(os.stat(path).st_mode)
    wanted = (current & 0o700) | (current & mode & 0o077)
    if wanted != current:
        os.chmod(path, wanted)
    return wanted


def tighten_file(path, mode=FILE_MODE):
    """Take from the file ``path`` every permission bit that ``mode`` does not grant (no-op when it
    is missing or already as tight). Returns whether the file exists."""
    try:
        current = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
    if current & ~mode:
        os.chmod(path, current & mode)
    return True


def open_temp(path, mode=FILE_MODE):
    """``(fd, temp_path)``: a new file beside ``path``, created exclusively (``O_EXCL``, never
    following a link) with ``mode``, under a random name that nobody could have prepared."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = f"{path}.tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, flags, mode)
        except FileExistsError:
            continue
        os.fchmod(fd, mode)  # the umask may have taken bits; never more than ``mode``, but exactly it
        return fd, tmp


def fsync_dir(folder):
    """fsync the folder ``folder``, so that a rename in it survives a crash."""
    fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_with(path, fill, mode=FILE_MODE):
    """Replace ``path`` atomically with what ``fill(fileobj)`` writes into a binary file object
    (:func:`open_temp`, fsync, rename, fsync of the folder). On any error the temporary file is
    removed and the old file stays whole."""
    fd, tmp = open_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(os.path.dirname(path))
    return path


def write_private(path, data, mode=FILE_MODE):
    """Replace ``path`` atomically with ``data`` (str as UTF-8, or bytes), readable by its owner only."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return replace_with(path, lambda f: f.write(raw), mode)


def read_small(path, what, limit, missing):
    """``(bytes, mode)`` of the small file ``path`` that holds a secret: at most ``limit`` bytes, a
    regular file. FileNotFoundError (its sentence ends with ``missing``, what to do) or ValueError, each
    one sentence beginning with ``what`` (``key file``, ``router credential``) and the path."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ValueError(f"{what} {path} is not a regular file")
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist; {missing}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a directory, not a file") from None
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    if len(raw) > limit:
        raise ValueError(f"{what} {path} is larger than {limit} bytes; it is one line")
    return raw, mode
