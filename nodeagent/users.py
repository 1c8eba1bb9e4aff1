"""Each app as its own unprivileged system user, when the agent runs as root.

The user of app ``hello`` is ``corral-hello``, created when missing
(``useradd --system``, no home, no login shell, a group of its own) and
looked up by name at every start: its uid is whatever the node gave it. The
whole instance runs as that user: the capture process drops to it right
after starting the app (:mod:`nodeagent.logshim`), so nothing of an instance
keeps root. The user can write its log folder and its ``HOME``
(``<data_dir>/home/<user>``, mode 0700); the image stays root's, read-only to it.

A process may run as a uid that has no passwd entry (a user deleted under a
running instance, an agent started under an arbitrary uid): nothing here
asks the passwd database about a uid, and ``USER``, ``LOGNAME`` and ``HOME``
are always set in the instance's environment, so that the app's own
``getpass.getuser()`` does not fail either (the uid's number stands in for a
missing name).

What the node provides is its condition ``Isolation`` (:func:`isolation`): True
when apps run as their own users, else False with the reason; where apps share
the agent's uid an app can read every file of that uid (the key's file, the
instance table), so the node says so rather than imply otherwise.

Decisions are pure functions (:func:`user_name`, :func:`decide`, :func:`isolation`,
:func:`corral.reach.denied`); :class:`AppUsers` and :func:`corral.reach.path_entries` do the I/O.
"""
import dataclasses
import hashlib
import os
import pwd
import re
import subprocess

import eventlet.semaphore

from corral import names
from corral.reach import denied, path_entries  # noqa: F401 (the walk is shared with the builder)

PREFIX = "corral-"
MAX_NAME = 32           # useradd's limit on a user name
NOLOGIN = "/usr/sbin/nologin"
CONDITION = "AppUsersNotEnforced"   # the old name of Isolation=False, still in a report's conditions
ISOLATION = "Isolation"
HASHED_MARK = "_"      # only in hashed names: a DNS label never holds it
HASHED_DIGITS = 16     # hex digits of the sha256 in a hashed name

_VERBATIM = re.compile(names.DNS_LABEL)         # apps whose name is used as it is: never a HASHED_MARK
_VALID = re.compile(r"^[a-z_][a-z0-9_-]*$")     # every name this module makes (useradd accepts it)


class UserError(Exception):
    """The app's user cannot be had; the message is one sentence."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who an instance runs as: ``uid``/``gid``, the ``name`` for ``USER`` and its ``home``."""

    uid: int
    gid: int
    name: str
    home: str

    def env(self):
        """The variables that tell the app who it is: ``USER``, ``LOGNAME``, ``HOME``."""
        return {"USER": self.name, "LOGNAME": self.name, "HOME": self.home}


def user_name(app):
    """The system user of ``app`` (pure): ``corral-<app>`` when that is a valid name of at most
    :data:`MAX_NAME` characters, else ``corral-<up to 8 characters of the app>_<16 hex digits of
    the sha256 of the whole name>``.

    ``hello`` -> ``corral-hello``; a 63-character DNS label ``a-very-long-...`` ->
    ``corral-a-very-l_1f2e3d4c5b6a7980``. Collision-free by construction between the two
    forms: a name used verbatim holds no ``_`` (only a DNS label is used so; anything else is
    hashed), a hashed one always does, so no app's verbatim name can equal another's hashed
    one (as ``abcdefghijklmnop-1f2e3d4c`` could equal the old hashed form of a long name). Two
    hashed names are equal only if 64 bits of their sha256 are.
    """
    if _VERBATIM.fullmatch(app) and len(PREFIX + app) <= MAX_NAME:
        return PREFIX + app
    clean = re.sub(r"[^a-z0-9-]+", "-", app.lower())
    digest = hashlib.sha256(app.encode("utf-8")).hexdigest()[:HASHED_DIGITS]
    keep = clean[:MAX_NAME - len(PREFIX) - 1 - len(digest)].strip("-")
    return f"{PREFIX}{keep}{HASHED_MARK}{digest}"


def _decision(wanted, is_root, blocked):
    """``(reason code, sentence)`` of why apps share the agent's user, or ``(None, None)`` (pure)."""
    if wanted is False:
        return "AppUsersOff", "apps run as the agent's user: app users are turned off (--no-app-users)"
    if not is_root:
        return "AgentNotRoot", "apps run as the agent's user: the agent does not run as root"
    if blocked:
        return "FolderNotPassable", (f"apps run as the agent's user: {blocked} cannot be passed by other users, "
                                     "so an app user could not reach its logs or its image")
    return None, None


def decide(wanted, is_root, blocked):
    """Whether apps run as their own users, and if not, why (one sentence) (pure).

    ``wanted`` is the setting: None (on when root), True or False;
    ``blocked`` a folder the agent needs other users to reach and they cannot, or None.
    """
    code, reason = _decision(wanted, is_root, blocked)
    return code is None, reason


def isolation(code, reason, namespaces=None):
    """The node condition ``Isolation`` (pure): ``{"type", "status", "reason", "message"}``,
    status ``"True"`` when each app runs as its own user (``code`` None), else ``"False"`` with
    ``code`` (``AgentNotRoot``, ``AppUsersOff``, ``FolderNotPassable``) and the sentence.
    ``namespaces``: None when each instance has a mount namespace of its own
    (:mod:`nodeagent.sandbox`), else why not; the message says which of the two keeps the
    agent's files from apps: the namespace, or file modes alone."""
    if code is None:
        if namespaces is None:
            return {"type": ISOLATION, "status": "True", "reason": "AppUsersAndNamespaces",
                    "message": "each app runs as its own system user in a mount namespace of its own: "
                               "a private /tmp, its image read-only, the agent's state, the key and other "
                               "apps' files not there at all"}
        return {"type": ISOLATION, "status": "True", "reason": "AppUsers",
                "message": f"each app runs as its own system user; no mount namespace ({namespaces}), so "
                           "file modes alone keep the agent's state, the key and other apps' files from it"}
    return {"type": ISOLATION, "status": "False", "reason": code,
            "message": f"{reason}: an app can read and signal the agent and every other app"}


def blocked_for_others(paths):
    """The first folder on the way to one of ``paths`` that other users cannot pass, or None."""
    for path in paths:
        found = denied(path_entries(path), None, None)
        if found:
            return found
    return None


def own_identity(uid, gid, home_env, fallback_home):
    """The agent's own user as an :class:`Identity`; its uid's number when it has no passwd name."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    name = entry.pw_name if entry else str(uid)
    home = home_env or (entry.pw_dir if entry else None) or fallback_home
    return Identity(uid, gid, name, home)


class AppUsers:
    """The system users of apps on this node: looked up by name, created when missing."""

    separate = True
    reason = None
    code = None

    def __init__(self, data_dir, run=subprocess.run):
        self.home_root = os.path.join(data_dir, "home")
        self._run = run
        self._lock = eventlet.semaphore.Semaphore()

    def _lookup(self, name):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def identity(self, app):
        """The :class:`Identity` of ``app``'s user, created when missing, with its home ready.

        Raises :class:`UserError` when it cannot be created or would be root.
        """
        name = user_name(app)
        with self._lock:
            entry = self._lookup(name)
            if entry is None:
                done = self._run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                  "--shell", NOLOGIN, "--user-group", "--comment", f"corral app {app}", name],
                                 capture_output=True, stdin=subprocess.DEVNULL)
                entry = self._lookup(name)  # another agent on this node may have created it first
                if entry is None:
                    why = (done.stderr or b"").decode("utf-8", "replace").strip().splitlines()
                    raise UserError(f"user {name} for app {app} could not be created "
                                    f"({why[-1] if why else f'useradd exited with code {done.returncode}'})")
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise UserError(f"user {name} has uid {entry.pw_uid} and gid {entry.pw_gid}: an app never runs as root")
        home = os.path.join(self.home_root, name)
        os.makedirs(self.home_root, mode=0o711, exist_ok=True)  # passed to reach one's own, never listed
        os.makedirs(home, mode=0o700, exist_ok=True)
        st = os.stat(home)
        if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
            os.chown(home, entry.pw_uid, entry.pw_gid)
        return Identity(entry.pw_uid, entry.pw_gid, name, home)


    def unreachable(self, identity, targets):
        """The first path of ``targets`` (``[(path, "x" | "r")]``) that ``identity`` cannot reach, or None."""
        for path, need in targets:
            found = denied(path_entries(path), identity.uid, identity.gid, need)
            if found:
                return found
        return None


class OwnUser:
    """Apps run as the agent's own user: it does not run as root, or app users are turned off."""

    separate = False

    def __init__(self, data_dir, home_env, reason="apps run as the agent's user", code="AppUsersOff"):
        self.data_dir = data_dir
        self.home_env = home_env
        self.reason = reason
        self.code = code

    def identity(self, app):
        """The agent's own :class:`Identity` (the same for every app)."""
        uid = os.getuid()
        fallback = os.path.join(self.data_dir, "home", str(uid))
        found = own_identity(uid, os.getgid(), self.home_env, fallback)
        if found.home == fallback:
            os.makedirs(fallback, mode=0o700, exist_ok=True)
        return found

    def unreachable(self, identity, targets):
        """Nothing is out of the agent's own reach that matters here: always None."""
        return None


def choose(wanted, data_dir, images_dir, home_env):
    """Who apps run as on this node: :class:`AppUsers` when the agent runs as root, app users are not
    turned off (``wanted`` False) and other users can reach the data and images folders; else
    :class:`OwnUser`, whose ``reason`` says why."""
    is_root = os.geteuid() == 0
    blocked = blocked_for_others([data_dir, images_dir]) if is_root and wanted is not False else None
    code, reason = _decision(wanted, is_root, blocked)
    return AppUsers(data_dir) if code is None else OwnUser(data_dir, home_env, reason, code)
