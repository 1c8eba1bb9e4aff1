"""Deterministic archives of an app's source folder, addressed by their content.

The same folder always packs to the same bytes: entries in sorted order, times
zero, owners zero and nameless, modes reduced to 0o755/0o644. So the digest
names the content (file names, bytes, executable bits, links) and nothing
else, and the builder's image id can build on it. The digest is the sha256 of
the uncompressed tar; what travels and is stored is its gzip.
"""
import fnmatch
import gzip
import hashlib
import io
import os
import stat
import tarfile
import zlib

from corral.spec.quantities import format_size
from corral.untar import unpack

MAX_SOURCE_BYTES = 100 << 20
SKIPPED_NAMES = frozenset({".git", "__pycache__", ".venv", "venv", "node_modules"})
SKIPPED_SUFFIXES = (".pyc",)
IGNORE_FILE = ".corralignore"


def _skipped(name):
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES)


def ignore_patterns(text):
    """The patterns of a ``.corralignore`` text: one per line, blank lines and ``#`` comments left out."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def is_ignored(rel, is_dir, patterns):
    """Whether the entry at relative posix path ``rel`` matches one of ``patterns`` (purely computational).

    Like the common subset of ``.gitignore``: ``*.log`` matches a name at
    any depth; a pattern with a ``/`` inside (``docs/build``) or a leading
    ``/`` matches the path from the source's root; a trailing ``/`` matches
    folders only. An ignored folder is left out with all it holds.
    """
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in pattern:
            if fnmatch.fnmatchcase(rel, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern):
            return True
    return False


def _entries(root):
    """``(relative posix path, absolute path, lstat)`` of everything to pack, sorted by path.

    A folder sorts before what it holds, since its path is a prefix of theirs.
    """
    found = []
    pending = [""]
    patterns = []
    if os.path.isfile(os.path.join(root, IGNORE_FILE)):
        with open(os.path.join(root, IGNORE_FILE), encoding="utf-8", errors="replace") as f:
            patterns = ignore_patterns(f.read())
    while pending:
        rel_dir = pending.pop()
        for name in os.listdir(os.path.join(root, rel_dir)):
            if _skipped(name):
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(root, rel)
            st = os.lstat(full)
            if patterns and is_ignored(rel, stat.S_ISDIR(st.st_mode), patterns):
                continue
            found.append((rel, full, st))
            if stat.S_ISDIR(st.st_mode):
                pending.append(rel)
    return sorted(found, key=lambda entry: entry[0])


def _link_target(root, rel, full):
    """The link text to store for the symlink ``rel``; ValueError when it points outside ``root``."""
    target = os.readlink(full)
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(os.path.dirname(full), target))
    if resolved != real_root and not resolved.startswith(real_root + os.sep):
        raise ValueError(f"source symlink {rel!r} points outside the source folder (to {target!r})")
    if os.path.isabs(target):  # inside, but absolute: store it relative so it survives unpacking elsewhere
        target = os.path.relpath(resolved, os.path.dirname(os.path.join(real_root, rel)))
    return target


def _info(rel, kind, mode, size=0, link=""):
    info = tarfile.TarInfo(rel)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_source(folder):
    """``(digest, data)`` for ``folder``: ``"sha256:<hex>"`` of the tar, and the tar gzipped.

    Skips ``.git``, ``__pycache__``, ``*.pyc``, ``.venv``, ``venv``,
    ``node_modules``, and what the folder's ``.corralignore`` lists (see
    :func:`is_ignored`). Keeps a symlink as a symlink when it points inside the
    folder. Raises ValueError when the folder is missing, a symlink points
    outside, an entry is neither file, folder nor symlink, or the content is
    over 100 MiB.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"source folder {folder!r} does not exist or is not a folder")
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for rel, full, st in _entries(folder):
            if stat.S_ISLNK(st.st_mode):
                tar.addfile(_info(rel, tarfile.SYMTYPE, 0o777, link=_link_target(folder, rel, full)))
            elif stat.S_ISDIR(st.st_mode):
                tar.addfile(_info(rel, tarfile.DIRTYPE, 0o755))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > MAX_SOURCE_BYTES:
                    raise ValueError(f"source folder {folder!r} holds over {format_size(MAX_SOURCE_BYTES)}, the limit for a source")
                with open(full, "rb") as f:
                    data = f.read()
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                tar.addfile(_info(rel, tarfile.REGTYPE, mode, size=len(data)), io.BytesIO(data))
            else:
                raise ValueError(f"source entry {rel!r} in {folder!r} is not a file, folder or symlink")
    raw = buffer.getvalue()
    if len(raw) > MAX_SOURCE_BYTES:
        raise ValueError(f"source folder {folder!r} packs to {format_size(len(raw))}, over the 100 MiB limit")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return digest, gzip.compress(raw, compresslevel=6, mtime=0)


def gunzip_source(data, limit=None):
    """The tar inside a source archive ``data`` (gzip), refusing to inflate past ``limit`` bytes
    (default :data:`MAX_SOURCE_BYTES`: a gzip bomb); ValueError, in one sentence, otherwise."""
    limit = MAX_SOURCE_BYTES if limit is None else limit
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as e:
        raise ValueError(f"source archive is not valid gzip ({e})") from None
    if len(out) > limit:
        raise ValueError(f"source archive unpacks to over {format_size(limit)}, the limit for a source")
    if not inflater.eof:
        raise ValueError("source archive is truncated")
    return out


def unpack_source(data, dest, expected_digest):
    """Verify ``data`` (from :func:`pack_source`) against ``expected_digest`` and extract it into ``dest``.

    ``dest`` is created when missing. Raises ValueError, before writing
    anything, when the digest does not match; extraction (:func:`corral.untar.unpack`)
    refuses absolute paths, ``..``, links out of ``dest`` and device files.
    """
    raw = gunzip_source(data)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if digest != expected_digest:
        raise ValueError(f"source archive digest is {digest}, expected {expected_digest}")
    unpack(raw, dest)
