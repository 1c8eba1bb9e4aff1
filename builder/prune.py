"""Keeping the builder's caches within their configured sizes, least recently used first.

::

    plan_evictions(entries, limit, keep)   which entries go (pure)
    prune_layers(workshop, ...)            finished layers built here: folder, archive, marker, and
                                           the image folders linking them; last used = marker's mtime
                                           (touched when a build reuses the layer or an agent fetches it)
    prune_wheels(workshop, uv)             the pip wheelhouses, a file per wheel (last used = mtime);
                                           uv's caches (the builder's and each build user's), a
                                           package at a time (``uv cache clean NAME``, as the cache's owner,
                                           then ``uv cache prune``), last used = the newest env layer
                                           holding the package

The worker prunes after each build, so no build of this builder runs then.
A layer is never removed while another build holds it (its per-layer lock:
the build making it, or one deriving a new environment from it), nor while
a process on this machine works in it (an instance in a shared images dir),
nor when another builder or an agent made it. Its marker goes first, so a
half-removed layer is "unfinished" and never used.
"""
import dataclasses
import errno
import fcntl
import os
import re
import shutil
import stat
import subprocess
import warnings

from builder import archives
from builder.buildusers import SAFE_PATH
from builder.layers import finished_layers
from builder.pinning import normalize_name
from corral import image_layout
from corral.privileges import become


@dataclasses.dataclass(frozen=True)
class Entry:
    """Something a cache holds: its key, its size in bytes, when it was last used (seconds)."""

    key: object
    size: int
    last_used: float


def plan_evictions(entries, limit, keep=frozenset()):
    """The keys of ``entries`` to remove, least recently used first, so that the rest total at
    most ``limit`` bytes; never a key in ``keep``. A ``limit`` of 0 or None is no limit.

    When the kept entries alone exceed the limit, every other entry goes and
    the cache stays over it. Ties in last use go by key, so the plan is
    stable. Purely computational.
    """
    total = sum(e.size for e in entries)
    if not limit or total <= limit:
        return []
    out = []
    for entry in sorted(entries, key=lambda e: (e.last_used, str(e.key))):
        if total <= limit:
            break
        if entry.key not in keep:
            out.append(entry.key)
            total -= entry.size
    return out


def prune_layers(workshop, keep=(), worked_in=None):
    """Remove layers built by this builder, least recently used first, until the layer cache
    (folders and archives) fits ``workshop.layer_cache_bytes``, sparing the ``(kind, id)`` in
    ``keep`` (the image just built: agents are about to fetch it); return the removed ``(kind, id)``.
    ``worked_in()`` gives the working folders of this machine's processes."""
    if not workshop.layer_cache_bytes:
        return []
    entries = []
    for kind in image_layout.LAYER_KINDS:
        for layer_id, marker in finished_layers(workshop.images_dir, kind):
            if marker.get("built_by") != workshop.name or marker.get("source") == "agent":
                continue
            try:
                used = os.stat(image_layout.layer_marker_path(workshop.images_dir, kind, layer_id)).st_mtime
            except OSError:
                continue
            entries.append(Entry((kind, layer_id), 2 * int(marker.get("size") or 0), used))
    keep = set(keep) | _layers_worked_in(workshop.images_dir, (worked_in or image_layout.working_dirs)())
    removed = []
    for kind, layer_id in plan_evictions(entries, workshop.layer_cache_bytes, keep):
        if _remove_layer(workshop, kind, layer_id):
            removed.append((kind, layer_id))
    if removed:
        _remove_broken_images(workshop.images_dir)
    return removed


def _layers_worked_in(images_dir, cwds):
    """The layers of every image whose code layer is some process's working folder."""
    cwds = {os.path.realpath(c) for c in cwds}
    keep = set()
    for name in _image_names(images_dir):
        facts = image_layout.read_marker(images_dir, "sha256:" + name) or {}
        code = os.path.realpath(os.path.join(images_dir, name, "app"))
        if any(c == code or c.startswith(code + os.sep) for c in cwds):
            keep |= {(layer.get("kind"), layer.get("id")) for layer in facts.get("layers") or ()
                     if isinstance(layer, dict)}
    return keep


def _remove_layer(workshop, kind, layer_id):
    """Remove one layer unless a build holds its lock; True when it went."""
    folder = image_layout.layer_dir(workshop.images_dir, kind, layer_id)
    try:
        fd = os.open(folder + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False   # a build makes it or derives from it right now
            raise
        try:
            os.unlink(image_layout.layer_marker_path(workshop.images_dir, kind, layer_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.unlink(archives.archive_path(workshop.cache_dir, kind, image_layout.image_hex(layer_id)))
        except FileNotFoundError:
            pass
        return True
    finally:
        os.close(fd)


def _image_names(images_dir):
    try:
        return [n for n in os.listdir(images_dir) if len(n) == 64 and os.path.isdir(os.path.join(images_dir, n))]
    except FileNotFoundError:
        return []


def _remove_broken_images(images_dir):
    """Remove the image folders one of whose layers is no longer finished."""
    for name in _image_names(images_dir):
        facts = image_layout.read_marker(images_dir, "sha256:" + name) or {}
        layers = [layer for layer in facts.get("layers") or () if isinstance(layer, dict)]
        if layers and any(image_layout.read_layer_marker(images_dir, layer.get("kind"), layer.get("id")) is None
                          for layer in layers):
            shutil.rmtree(os.path.join(images_dir, name), ignore_errors=True)


def prune_wheels(workshop, uv=None, offload=lambda fn, *args: fn(*args)):
    """Bring the wheel caches (pip's wheelhouses, uv's caches: the builder's own and each build
    user's, :mod:`builder.buildusers`) within ``workshop.wheel_cache_bytes`` together, least
    recently used first; return the removed keys (file paths; package names, ``<build user>/<name>``
    for a build user's).

    ``offload(fn, *args)`` runs the walk over uv's caches (file system only);
    the ``uv cache`` commands run in the caller's (green) thread, each as the owner of its cache.
    """
    if not workshop.wheel_cache_bytes:
        return []
    entries, keep, packages = [], set(), {}
    used = _package_last_use(workshop.images_dir)
    for label, root in _cache_roots(workshop.cache_dir):
        for entry in _scandir(os.path.join(root, "wheels")):
            if entry.name.endswith(".whl") and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                entries.append(Entry(entry.path, st.st_size, st.st_mtime))
        uv_dir = os.path.join(root, "uv")
        uv_sizes, uv_rest = offload(_uv_package_sizes, uv_dir)
        for name, size in uv_sizes.items():
            key = f"{label}/{name}" if label else name
            packages[key] = (uv_dir, name)
            entries.append(Entry(key, size, used.get(name, 0.0)))
        shared = f"-uv-shared-{label}"   # uv's metadata and interpreter info: counted, never evicted here
        keep.add(shared)
        entries.append(Entry(shared, uv_rest, float("inf")))
    removed, cleaned = [], set()
    for key in plan_evictions(entries, workshop.wheel_cache_bytes, keep):
        if key in packages:
            uv_dir, name = packages[key]
            if uv is not None and _uv(uv, uv_dir, "clean", name):
                removed.append(key)
                cleaned.add(uv_dir)
        else:
            try:
                os.unlink(key)
                removed.append(key)
            except FileNotFoundError:
                pass
    for uv_dir in sorted(cleaned):
        _uv(uv, uv_dir, "prune")
    return removed


def _cache_roots(cache_dir):
    """``[(label, folder)]`` of the folders holding a ``uv/`` and a ``wheels/`` cache: the builder's
    own (label "") and each build user's (label: its name)."""
    roots = [("", cache_dir)]
    for entry in sorted(_scandir(os.path.join(cache_dir, "builds")), key=lambda e: e.name):
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            roots.append((entry.name, entry.path))
    return roots


_DIST_INFO = re.compile(r"^(.+)-[^-]+\.dist-info$")


def _uv_package_sizes(uv_dir):
    """``({normalized package name: bytes of its unpacked wheels}, bytes of everything else)`` in uv's cache."""
    sizes, total = {}, 0
    for root, dirs, files in os.walk(uv_dir):
        total += sum(_size(os.path.join(root, f)) for f in files)
    archives = os.path.join(uv_dir, "archive-v0")
    for entry in _scandir(archives):
        names = [m.group(1) for m in map(_DIST_INFO.match, _listdir(entry.path)) if m]
        if not names:
            continue
        size = sum(_size(os.path.join(root, f)) for root, _, files in os.walk(entry.path) for f in files)
        name = normalize_name(names[0])
        sizes[name] = sizes.get(name, 0) + size
    return sizes, max(0, total - sum(sizes.values()))


def _package_last_use(images_dir):
    """``{normalized package name: mtime of the newest env layer marker pinning it}``."""
    out = {}
    for layer_id, marker in finished_layers(images_dir, "env"):
        try:
            used = os.stat(image_layout.layer_marker_path(images_dir, "env", layer_id)).st_mtime
        except OSError:
            continue
        for pin in marker.get("pins") or ():
            name = normalize_name(str(pin).split("==", 1)[0])
            out[name] = max(out.get(name, 0.0), used)
    return out


def _uv(uv, uv_dir, *args):
    """Run ``uv cache ARGS`` on ``uv_dir`` as the owner of that folder (a build user's cache is
    cleaned by that user, never by root following what it planted there)."""
    try:
        st = os.lstat(uv_dir)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    theirs = st.st_uid != os.getuid()
    with warnings.catch_warnings():  # eventlet warns of any fork; the child execs at once
        warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
        done = subprocess.run([uv, "cache", *args, "--cache-dir", uv_dir], capture_output=True,
                              stdin=subprocess.DEVNULL, check=False,
                              env=dict(PATH=SAFE_PATH, HOME=uv_dir) if theirs else None,
                              preexec_fn=(lambda: become(st.st_uid, st.st_gid)) if theirs else None)
    return done.returncode == 0


def _scandir(path):
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _size(path):
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0
