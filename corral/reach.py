"""Who can reach a path: the permission walk from ``/`` down to a file.

An app's user must pass every folder on the way to its code, its command and
the interpreter its image links to; a builder must make images from an
interpreter that every app user can run. :func:`denied` decides from
``(path, mode, owner, group)`` entries (pure); :func:`path_entries` reads
them, and :func:`open_to_others` asks the question for "any other user".
"""
import os
import stat

_BITS = {"x": (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH), "r": (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)}


def _allowed(mode, owner, group, uid, gid, need):
    bits = _BITS[need]
    if uid == 0:
        return True
    if owner == uid:
        return bool(mode & bits[0])
    if gid is not None and group == gid:
        return bool(mode & bits[1])
    return bool(mode & bits[2])


def denied(entries, uid, gid, need="x"):
    """The first path in ``entries`` that user ``uid`` (group ``gid``) cannot pass, or None (pure).

    ``entries`` are ``(path, mode, owner uid, owner gid)`` from ``/`` down
    to a target: every folder must be searchable (``x``), the target itself
    allow ``need``. ``uid`` None asks for any other user (the "other" bits).
    """
    for n, (path, mode, owner, group) in enumerate(entries):
        want = need if n == len(entries) - 1 else "x"
        if not _allowed(mode, owner, group, -1 if uid is None else uid, gid, want):
            return path
    return None


def path_entries(path):
    """``(path, mode, uid, gid)`` of ``/`` and of every folder down to ``path`` (symlinks resolved)."""
    real = os.path.realpath(path)
    out = []
    current = "/"
    for part in [""] + [p for p in real.strip("/").split("/") if p]:
        current = os.path.join(current, part) if part else "/"
        st = os.stat(current)
        out.append((current, st.st_mode, st.st_uid, st.st_gid))
    return out


def open_to_others(path, need="x"):
    """Whether any user may reach ``path`` (resolved) for ``need``; False when it does not exist."""
    try:
        return denied(path_entries(path), None, None, need) is None
    except OSError:
        return False
