"""The cluster key: one shared secret file that signs every bus message.

File format: the key as hex digits on one line (``new_key_file`` writes 32
random bytes, 64 digits). Whitespace around it is ignored.

Permissions: a key file that group or others may read is accepted with a
warning, not refused. Deployments often give a service group read access
(``0640 root:corral``); refusing would push people to run daemons as root.
The files this module writes are always ``0600``.

Where a daemon finds it (:func:`key_path`): ``$CORRAL_SECRET_FILE``, else
``/etc/corral/secret``; ``--secret-file`` still works but puts the path on the
command line, where any process of the machine reads it (``/proc/PID/cmdline``),
so ``corral up`` never uses it. The daemon removes the variable from its own
environment once read, so that nothing it starts inherits it, and makes itself
non-dumpable (:func:`hide_process`), so that a process of its own uid cannot
read its memory or its ``/proc/PID/environ``.
"""
import ctypes
import ctypes.util
import logging
import os
import stat
import tempfile

from corral import private

log = logging.getLogger(__name__)

ENV_VAR = "CORRAL_SECRET_FILE"
DEFAULT_PATH = "/etc/corral/secret"
STORE_ENV_VAR = "CORRAL_STORE"   # a store DSN may hold a password: it is taken from here, not argv
PR_SET_DUMPABLE = 4   # prctl(2)

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
    raw, mode = private.read_small(path, "key file", MAX_FILE_BYTES, "create one with 'corral up' or python -c "
                                   f"\"import secrets; print(secrets.token_hex(32))\" > {path}")
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


def key_path(given=None, environ=os.environ, default=DEFAULT_PATH):
    """The path of the cluster key a daemon reads: ``given`` (``--secret-file``, kept for
    compatibility), else ``$CORRAL_SECRET_FILE``, else ``default`` when it exists.

    The variable is removed from ``environ`` either way, so that no process the daemon
    starts (an app, a build) inherits it. Raises FileNotFoundError naming all three when
    none holds.
    """
    from_env = environ.pop(ENV_VAR, None)
    path = given or from_env or (default if default and os.path.exists(default) else None)
    if not path:
        raise FileNotFoundError(f"no cluster key: set {ENV_VAR} to the key file's path "
                                f"(or put it at {default})")
    return os.fspath(path)


def store_dsn(given=None, environ=os.environ):
    """The store DSN a daemon opens: ``given`` (``--store``), else ``$CORRAL_STORE``, which is
    removed from ``environ`` either way (a PostgreSQL DSN may carry a password, which must be
    neither on the command line nor inherited). Raises ValueError when neither is set."""
    from_env = environ.pop(STORE_ENV_VAR, None)
    if not (given or from_env):
        raise ValueError(f"no store: give --store or set {STORE_ENV_VAR} (sqlite:///PATH or postgresql://...)")
    return given or from_env


def hide_process():
    """Make this process non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): processes of the same uid
    can then read neither its memory nor its ``/proc/PID/environ`` (the key, the token, a store
    password), and no core file is written. Returns whether the kernel agreed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.warning("could not make this process non-dumpable: processes of its user may read its memory")
    return ok
