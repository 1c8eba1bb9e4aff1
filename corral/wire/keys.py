"""The cluster key: one shared secret file that signs every bus message.

File format: the key as hex digits on one line (``new_key_file`` writes 32
random bytes, 64 digits). Whitespace around it is ignored.

Permissions: a key file that group or others may read is accepted with a
warning, not refused. Deployments often give a service group read access
(``0640 root:corral``); refusing would push people to run daemons as root.
The files this module writes are always ``0600``.
"""
import logging
import os
import stat
import tempfile

log = logging.getLogger(__name__)

KEY_BYTES = 32
MAX_FILE_BYTES = 4096  # a key file is one line; anything bigger is the wrong file


def new_key_file(path) -> bytes:
    """Write a fresh random key to ``path`` (mode 0600) and return it.

    Atomic: the key is written to a temporary file beside ``path`` and then
    linked into place, so no reader ever sees a half-written key. Refuses
    (FileExistsError) to overwrite an existing file: replacing the cluster key
    by accident would cut every node off.
    """
    path = os.fspath(path)
    if os.path.lexists(path):
        raise FileExistsError(f"key file {path} already exists; remove it first if you mean to replace the cluster key")
    key = os.urandom(KEY_BYTES)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".corral-key-", dir=folder)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if path appeared meanwhile: never overwrites
        except FileExistsError:
            raise FileExistsError(
                f"key file {path} already exists; remove it first if you mean to replace the cluster key"
            ) from None
    finally:
        os.unlink(tmp)
    return key


def read_key(path) -> bytes:
    """Return the key stored at ``path`` as bytes.

    Raises FileNotFoundError when the file is missing, and ValueError when it
    cannot be read, is not hex, or holds fewer than 32 bytes of key; each with
    one sentence naming the file. Logs a warning when group or others may read
    the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ValueError(f"key file {path} is not a regular file")
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"key file {path} does not exist; create one with 'corral up' or "
            f"python -c \"import secrets; print(secrets.token_hex(32))\" > {path}"
        ) from None
    except IsADirectoryError:
        raise ValueError(f"key file {path} is a directory, not a file") from None
    except OSError as e:
        raise ValueError(f"key file {path} cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"key file {path} is larger than {MAX_FILE_BYTES} bytes; it should hold one line of hex")
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"key file {path} does not hold a hex key (expected {2 * KEY_BYTES} or more hex digits)") from None
    if len(key) < KEY_BYTES:
        raise ValueError(f"key file {path} holds {len(key)} bytes of key; at least {KEY_BYTES} are needed")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s may be read by group or others (mode %o); chmod 600 it unless that is meant",
                    path, stat.S_IMODE(mode))
    return key
