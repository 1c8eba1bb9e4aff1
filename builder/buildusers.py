"""Who an app's build commands run as: an identity of its own, never the builder's.

Installing an app's requirements runs code its author chose (an sdist's
``setup.py`` or build backend, a requirements file's own options). So, when
the builder runs as root, every command of a build that installs or resolves
runs as the app's **build user** ``corral_build-<16 hex digits of the app's
sha256>`` (``useradd --system``, no home, no login shell, a group of its own,
never an app's run-time user ``corral-...``), with:

- no supplementary groups and ``PR_SET_NO_NEW_PRIVS`` (:func:`corral.privileges.become`);
- a fresh environment: ``PATH``, ``HOME`` and ``TMPDIR`` in a scratch folder of this
  build, ``LANG``, and the operator's index settings; never ``CORRAL_STORE``, a DSN or a key;
- at most :data:`MAX_PROCESSES` processes and threads at once (``RLIMIT_NPROC``, which the
  kernel counts per uid: the build user's, whatever cgroups the machine has);
- its own session (:mod:`builder.commands`), killed whole when each command ends,
  and every process of the build user killed when the build ends (and before it
  starts): a daemon that left its session goes too. Builds of one app on one machine
  take turns (a ``flock`` per build user), so that kill never hits another build;
- write access to its own caches (``<cache>/builds/<user>/uv`` and ``wheels``, 0700), this
  build's scratch ``HOME``, ``TMPDIR`` and ``work`` folders (in ``build-<token>/``, root's,
  where the builder also puts what it hands the build: :meth:`Box.write_input`) and the
  layer folder being built, which the builder makes and hands over (:meth:`Box.hand_over`);
  the source, the finished layers, the archives, the logs and the builder's state stay
  root's. What the build writes is read back without following a link
  (:meth:`Box.read_output`), and no process of the build user runs while the builder
  works between its commands (:meth:`Box.after_command`).

Its caches are its app's alone, so a build can spoil only its own app's later
builds; the environment layers and the remembered resolutions are keyed by the
build user too (:attr:`Box.key`), so no app ever receives a layer another app's
build could have touched. Where the builder is not root it cannot change uid:
builds then share its identity (:class:`SharedUser`, said once at start) and
still get the fresh environment.

:func:`build_user_name`, :func:`build_environment` and :func:`uids_of_status`
are pure; :class:`BuildUsers`, :class:`SharedUser` and :class:`Box` do the I/O.
"""
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import pwd
import resource
import signal
import stat
import subprocess
import time

from corral import privileges
from corral.reach import denied, path_entries

PREFIX = "corral_build-"   # an app's run-time user begins "corral-": never equal to this
DIGITS = 16
NOLOGIN = "/usr/sbin/nologin"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
KILL_WAIT = 5.0
MAX_PROCESSES = 1024   # RLIMIT_NPROC of a build user: counted per uid, so per app, cgroup or not


def build_user_name(app):
    """The build user of ``app`` (pure): ``corral_build-`` and 16 hex digits of the sha256 of its name."""
    return PREFIX + hashlib.sha256(app.encode("utf-8")).hexdigest()[:DIGITS]


def build_environment(home, tmp, extra=None):
    """The whole environment of a build command (pure): a fixed ``PATH``, ``HOME`` and ``TMPDIR`` in
    the build's scratch folder, ``LANG``, and ``extra`` (the index settings); nothing of the builder's."""
    env = {"PATH": SAFE_PATH, "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def uids_of_status(text):
    """The real, effective, saved and file-system uids in a ``/proc/<pid>/status`` text (pure)."""
    for line in text.splitlines():
        if line.startswith("Uid:"):
            return {int(n) for n in line.split()[1:5]}
    return set()


@dataclasses.dataclass(frozen=True)
class Box:
    """One build's identity and scratch: who its commands run as (``uid``/``gid``, None: the builder's
    own), its folder (``root``: its caches), this build's ``work`` folder and its ``env``."""

    uid: int | None
    gid: int | None
    name: str
    root: str           # its caches: uv/, wheels/
    inputs: str         # what the builder hands the build (requirement files, the lock): the builder's
    work: str           # what the build writes (a lock, a report, a copy of the source): the build's
    env: dict
    key: str | None     # part of env layer ids and resolution keys (None: shared by every app)
    running: list = dataclasses.field(default_factory=lambda: [0], compare=False)   # its commands running now

    @property
    def uv_cache(self):
        return os.path.join(self.root, "uv")

    @property
    def wheelhouse(self):
        return os.path.join(self.root, "wheels")

    @property
    def separate(self):
        return self.uid is not None

    def preexec(self):
        """In the child, before exec: become the build user for good, at most :data:`MAX_PROCESSES`
        processes and threads of it at once (a fork bomb fails inside the build), or keep the
        builder's user with ``no_new_privs``. Raises OSError (the command then never runs)."""
        if self.uid is None:
            privileges.no_new_privs()
        else:
            resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
            privileges.become(self.uid, self.gid)

    def hand_over(self, path, tree=False, files=False):
        """Make the folder ``path`` (made by the builder) the build user's to write; with ``tree``, every
        folder under it too, and with ``files`` every file and link (a copy of the source); without,
        files and links stay as they are (a hard-link copy of another layer: they are its inodes)."""
        if self.uid is None:
            return
        os.lchown(path, self.uid, self.gid)
        if tree:
            for top, dirs, names in os.walk(path):
                for name in dirs:
                    if not os.path.islink(os.path.join(top, name)):   # (a link to a folder: listed, not a folder)
                        os.lchown(os.path.join(top, name), self.uid, self.gid)
                for name in names if files else ():
                    os.lchown(os.path.join(top, name), self.uid, self.gid)

    def make_folder(self, path, mode=0o755):
        """A new, empty folder at ``path`` (made by the builder, refused when it exists), the build's to write."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(path, mode)
        os.chmod(path, mode)
        self.hand_over(path)
        return path

    def write_input(self, name, text):
        """Write ``text`` to the file ``name`` of :attr:`inputs` (new, never through a link); its path."""
        path = os.path.join(self.inputs, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def read_output(self, path, limit=64 << 20):
        """The text of the file the build wrote at ``path`` (in :attr:`work`): a regular file, opened
        without following a link or waiting on a FIFO. Raises OSError otherwise."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(errno.EINVAL, f"{path} is not a regular file")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"{path} is larger than {limit} bytes")
        return data.decode("utf-8")

    def before_command(self):
        """A command of the build is about to start (the pip engine runs several at once)."""
        self.running[0] += 1

    def after_command(self):
        """Once a command has ended and no other of the build runs: every process of the build user
        killed (one that left its command's session too), so the builder never works beside one."""
        self.running[0] -= 1
        if self.uid is not None and self.running[0] == 0:
            kill_user(self.uid)


def kill_user(uid, proc="/proc", deadline=KILL_WAIT):
    """SIGKILL every process whose any uid is ``uid``, until none is left or ``deadline`` seconds pass;
    return how many were signalled. Never for uid 0 or the caller's own."""
    if uid in (0, os.getuid()):
        raise ValueError(f"refusing to kill every process of uid {uid}")
    killed = 0
    ends = time.monotonic() + deadline
    while True:
        found = []
        for name in os.listdir(proc):
            if name.isdigit():
                try:
                    with open(os.path.join(proc, name, "status"), encoding="utf-8") as f:
                        if uid in uids_of_status(f.read()):
                            found.append(int(name))
                except OSError:
                    continue
        if not found or time.monotonic() > ends:
            return killed
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)   # green after corral.green.patch(): the dead are reaped by their parents


class _Turns:
    """An exclusive ``flock`` on ``path`` for a build of one app (polled, so a green thread waits)."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(self.fd)
                    raise
            time.sleep(0.1)

    def __exit__(self, *exc):
        os.close(self.fd)


class BuildUsers:
    """Each app's builds as its own build user (the builder runs as root)."""

    separate = True
    reason = None

    def __init__(self, cache_dir, run=subprocess.run):
        self.base = os.path.join(cache_dir, "builds")
        self._run = run

    def _lookup(self, name):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def user(self, app):
        """``(uid, gid, name)`` of ``app``'s build user, created when missing. Raises OSError when it
        cannot be had or would be root."""
        name = build_user_name(app)
        entry = self._lookup(name)
        if entry is None:
            done = self._run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                              "--shell", NOLOGIN, "--user-group", "--comment", f"corral build of {app}", name],
                             capture_output=True, stdin=subprocess.DEVNULL)
            entry = self._lookup(name)   # another builder here may have made it first
            if entry is None:
                why = (done.stderr or b"").decode("utf-8", "replace").strip().splitlines()
                raise OSError(errno.EPERM, f"build user {name} of app {app} could not be created"
                                           f" ({why[-1] if why else f'useradd exited with code {done.returncode}'})")
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise OSError(errno.EPERM, f"build user {name} has uid {entry.pw_uid} gid {entry.pw_gid}: never root")
        return entry.pw_uid, entry.pw_gid, name

    @contextlib.contextmanager
    def session(self, app, token, extra_env=None):
        """A :class:`Box` for one build of ``app``: its user, its folder (0700, its own), a scratch
        ``HOME``/``TMPDIR`` and work folder; builds of one app take turns. Every process of the user
        is killed before and after, and the scratch removed."""
        uid, gid, name = self.user(app)
        os.makedirs(self.base, mode=0o711, exist_ok=True)
        os.chmod(self.base, 0o711)   # passed to reach one's own, never listed
        root = os.path.join(self.base, name)
        with _Turns(os.path.join(self.base, f".{name}.lock")):
            kill_user(uid)
            _folder(root, 0, 0, 0o711)
            for cache in ("uv", "wheels"):
                _folder(os.path.join(root, cache), uid, gid, 0o700)
            scratch = os.path.join(root, f"build-{token}")
            box = Box(uid=uid, gid=gid, name=name, root=root, inputs=scratch, work=os.path.join(scratch, "work"),
                      key=name, env=build_environment(os.path.join(scratch, "home"), os.path.join(scratch, "tmp"),
                                                      extra_env))
            try:
                os.mkdir(scratch, 0o711)
                os.chmod(scratch, 0o711)
                for path in (box.work, box.env["HOME"], box.env["TMPDIR"]):
                    box.make_folder(path, 0o700)
                yield box
            finally:
                kill_user(uid)
                _remove(scratch)


class SharedUser:
    """Builds run as the builder's own user (it is not root, or build users are not to be had): they
    still get a fresh environment without the store's credentials, and share one cache."""

    separate = False

    def __init__(self, cache_dir, reason):
        self.cache_dir = cache_dir
        self.reason = reason

    @contextlib.contextmanager
    def session(self, app, token, extra_env=None):
        """A :class:`Box` of the builder's own user: the shared caches, a scratch ``HOME``/``TMPDIR``."""
        scratch = os.path.join(self.cache_dir, "work", f"build-{token}")
        box = Box(uid=None, gid=None, name="", root=self.cache_dir, inputs=scratch, work=os.path.join(scratch, "work"),
                  key=None, env=build_environment(os.path.join(scratch, "home"), os.path.join(scratch, "tmp"),
                                                  extra_env))
        try:
            for path in (box.work, box.env["HOME"], box.env["TMPDIR"]):
                os.makedirs(path, 0o700)
            yield box
        finally:
            _remove(scratch)


def _folder(path, uid, gid, mode):
    """``path`` made when missing, owned by ``uid``/``gid`` with ``mode``; refused when it is a link."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _remove(path):
    """Remove the folder ``path`` and all in it, following no link (``rm -rf`` does not)."""
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--", path], check=False)


def choose(cache_dir, images_dir, tools=(), is_root=None):
    """Who builds run as here: :class:`BuildUsers` when the builder is root, other users can pass the
    way to its images and cache folders and run each of ``tools`` (the installer: uv, or the
    builder's python for pip), else :class:`SharedUser` with the reason (one sentence)."""
    if is_root is None:
        is_root = os.geteuid() == 0
    if not is_root:
        return SharedUser(cache_dir, "builds run as the builder's own user: the builder does not run as root")
    for path in (images_dir, cache_dir):
        blocked = denied(path_entries(path)[:-1], None, None)
        if blocked:
            return SharedUser(cache_dir, f"builds run as the builder's own user: {blocked} cannot be passed by"
                                         " other users, so a build user could not reach its folders")
    for tool in tools:
        blocked = denied(path_entries(tool), None, None)
        if blocked:
            return SharedUser(cache_dir, f"builds run as the builder's own user: {blocked} cannot be passed by"
                                         f" other users, so a build user could not run {tool}")
    return BuildUsers(cache_dir)
