"""The mount namespace an instance lives in: which of the node's files its processes can see.

Where apps run as their own users and the kernel allows mount namespaces (the
agent asks once, at start: :func:`probe`), each instance's capture process
enters a mount namespace of its own, as root, before it drops to the app's
user; the app's every run inherits it, and its exec checks and ``corral
exec`` sessions join it (:func:`join`). In it:

- ``/tmp`` is a fresh tmpfs (``nosuid,nodev``, mode 1777), the instance's own;
- the agent's data and images folders are each covered by an empty tmpfs,
  sealed read-only, so the state, the instance table, other apps' logs,
  homes and images are not there at all; only the folders this instance needs
  are bound back at their own paths: its image and the two layers it links
  (read-only, ``nosuid,nodev``), the interpreter its virtualenv names when
  that lies under a hidden folder (the same), its user's home and its log
  folder (read-write, ``nosuid,nodev``): all decided by the agent, never
  taken from the spec's env (a ``HOME`` or ``PATH`` there cannot bring a
  hidden folder back);
- the key's file, when it lies outside those folders, is covered by
  ``/dev/null``.

Nothing of it propagates back to the node: the namespace is made private
(``MS_REC|MS_PRIVATE``) before anything is mounted. Where namespaces are not
to be had, file modes alone keep those files from the app, and the node's
``Isolation`` condition says which of the two holds.

:func:`plan` decides the mounts (pure, JSON-able, made by the agent);
:func:`enter` carries them out in the capture process (which imports this
module, so it imports little); :func:`join` is the exec child's step.
"""
import ctypes
import errno
import os

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

HIDE_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
HIDE_DATA = b"mode=0711,size=1m"
TMP_FLAGS = MS_NOSUID | MS_NODEV
TMP_DATA = b"mode=1777"
KEPT_DIR_MODE = 0o711       # folders made in a hiding tmpfs on the way to a bound one: passable, not listable

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:   # no libc to call: no namespace (probe() says so)
    _libc = None


class SandboxError(OSError):
    """A step of :func:`enter` failed: ``errno`` and ``strerror``, ``step`` naming it."""

    def __init__(self, code, step):
        super().__init__(code, os.strerror(code))
        self.step = step


def _under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def plan(hide, keep_ro=(), keep_rw=(), mask=(), tmp="/tmp"):
    """The mounts of an instance's namespace (pure): a list of JSON-able steps for :func:`enter`.

    ``hide``: folders to cover (the agent's data and images folders); ``keep_ro``/``keep_rw``:
    folders to bind back at their own paths, read-only or not (all ``nosuid,nodev``); ``mask``:
    files to cover with ``/dev/null``; ``tmp``: the folder that gets a fresh tmpfs. Every path
    absolute and real (no link in it). A hidden folder under another, or under ``tmp``, needs no
    tmpfs of its own; a kept folder outside every hidden one, or under a kept one of the same
    kind, needs no bind (it is seen as it is); a masked file under a hidden folder is gone already.

    Steps: ``["tmp", path]``, ``["hide", path]``, ``["bind", path, "ro" | "rw"]`` (its source is
    opened before anything is hidden, so a bind under a hidden folder finds the real one),
    ``["mask", path]``, ``["seal", path]`` (a hiding tmpfs made read-only once its binds are in).
    """
    for p in [*hide, *keep_ro, *keep_rw, *mask, tmp]:
        if not os.path.isabs(p) or os.path.normpath(p) != p or p == "/":
            raise ValueError(f"sandbox path {p!r} must be absolute, normal and not /")
    covers = sorted({h for h in hide if not _under(h, tmp)})
    covers = [h for h in covers if not any(o != h and _under(h, o) for o in covers)]
    covered = [tmp, *covers]
    binds = []
    kept = sorted({(p, "ro") for p in keep_ro} | {(p, "rw") for p in keep_rw}, key=lambda k: (k[0].count("/"), k))
    for path, how in kept:
        if not any(_under(path, c) for c in covered):
            continue
        if any(_under(path, b) and b_how == how for b, b_how in binds):
            continue
        binds.append((path, how))
    steps = [["tmp", tmp]] + [["hide", h] for h in covers] + [["bind", p, how] for p, how in binds]
    steps += [["mask", m] for m in sorted(set(mask)) if not any(_under(m, c) for c in covered)]
    return steps + [["seal", h] for h in covers]


def _call(result, step):
    if result != 0:
        raise SandboxError(ctypes.get_errno() or errno.EIO, step)


def _mount(source, target, fstype, flags, data, step):
    _call(_libc.mount(source, os.fsencode(target), fstype, flags, data), step)


def _make_way(path):
    """Make the missing folders of ``path`` (as root, :data:`KEPT_DIR_MODE`), in a tmpfs of ours."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        os.mkdir(folder, KEPT_DIR_MODE)
        os.chmod(folder, KEPT_DIR_MODE)   # whatever the umask


def enter(steps):
    """Enter a new mount namespace and carry out ``steps`` (:func:`plan`), as root. Raises
    :class:`SandboxError` naming the step that failed: the instance must then not start."""
    if _libc is None:
        raise SandboxError(errno.ENOSYS, "entering a mount namespace (no libc)")
    _call(_libc.unshare(CLONE_NEWNS), "entering a mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "making the mount namespace private")
    sources = {}
    try:
        # Opened in the new namespace (a bind's source must be a mount of the caller's namespace)
        # and before anything hides them.
        for step in steps:
            if step[0] == "bind":
                try:
                    sources[step[1]] = os.open(step[1], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as e:
                    raise SandboxError(e.errno or errno.EIO, f"opening {step[1]} to keep it") from None
        for step in steps:
            kind, path = step[0], step[1]
            if kind == "tmp":
                _mount(b"tmpfs", path, b"tmpfs", TMP_FLAGS, TMP_DATA, f"mounting a private {path}")
            elif kind == "hide":
                _mount(b"tmpfs", path, b"tmpfs", HIDE_FLAGS, HIDE_DATA, f"hiding {path}")
            elif kind == "bind":
                try:
                    _make_way(path)
                except OSError as e:
                    raise SandboxError(e.errno or errno.EIO, f"making the way to {path}") from None
                _mount(f"/proc/self/fd/{sources[path]}".encode(), path, None, MS_BIND, None, f"keeping {path}")
                flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if step[2] == "ro" else 0)
                _mount(None, path, None, flags, None, f"making {path} {'read-only, ' if step[2] == 'ro' else ''}"
                                                      "nosuid and nodev")
            elif kind == "mask":
                _mount(b"/dev/null", path, None, MS_BIND, None, f"covering {path}")
            elif kind == "seal":
                _mount(b"tmpfs", path, b"tmpfs", MS_REMOUNT | MS_RDONLY | HIDE_FLAGS, HIDE_DATA, f"sealing {path}")
            else:
                raise SandboxError(errno.EINVAL, f"step {kind!r}")
    finally:
        for fd in sources.values():
            os.close(fd)


def join(pid, ticks, start_ticks):
    """Enter the mount namespace of the instance whose capture process is ``pid``, started at
    ``ticks`` (an exec child's step, as root, before it changes folder and drops its
    privileges). The namespace is opened first and the process checked after: a pid that
    was reused in between is caught (``start_ticks(pid)`` differs). Raises OSError."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if start_ticks(pid) != ticks:
            raise OSError(errno.ESRCH, f"the instance's process {pid} is gone")
        if _libc is None or _libc.setns(fd, CLONE_NEWNS) != 0:
            code = ctypes.get_errno() if _libc is not None else errno.ENOSYS
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def refusal():
    """None when an instance may have a namespace of its own on this node, else why not (the
    kernel's ``strerror``): a throwaway child tries the steps :func:`enter` takes for a private
    ``/tmp``. Refused to any but root."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            enter(plan(hide=[], tmp="/tmp"))
            code = 0
        except SandboxError as e:
            code = min(e.errno or 255, 255)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else os.strerror(code) if 0 < code < 255 else f"exit status {code}"
