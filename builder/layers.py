"""Making the two layers of an image: the environment and the code.

::

    env layer   lock -> <images>/env/<hex>/     (uv: relocatable, built in env/.tmp-* and renamed in;
                                              pip: built at its final path, its scripts name it)
                 one pass (no lock yet, no base here): make_venv, install -r (resolving as it
                          fetches), lock made offline from the warm cache -> id -> rename
                 fresh:   engine.make_venv, engine.install(lock)
                 derived: hard-link copy of the nearest finished env layer (same python, most
                          pins in common), its own path written into bin/, engine.install(lock)
                          brings it to exactly the lock (uv sync: removes, adds, compiles the rest)
                 then the marker <images>/env/<hex>.json
    code layer  staging (unpacked source) -> bytecode compiled -> renamed to <images>/code/<hex>/,
                 then the marker
    archive     after the build: ensure_archive packs <cache>/artifacts/<kind>-<hex>.tar and adds
                 its sha256 and size to the marker (a node sharing the images dir needs only the
                 folder; a remote node fetches the archive)

A layer without its marker is unfinished: it is removed before it is built
again and never served. Builders sharing an images dir take a file lock per
layer, so identical concurrent builds make it once and the second finds it
done. A derived layer shares file inodes with its base; nothing writes into
a file in place (installers replace files, bytecode is written atomically),
so the base is left as it was.
"""
import compileall
import errno
import fcntl
import os
import shutil
import stat
import subprocess
import time
import uuid

from builder import archives
from builder.commands import run_logged
from builder.failures import BuildAbandoned, BuildFailed
from builder import pinning
from builder.imageid import env_id_of_lock
from corral import image_layout

_SCRIPT_LIMIT = 4 << 20   # bin/ files larger than this are binaries, not scripts naming the venv
MIN_SHARED = 0.5          # derive only from a layer holding at least half of the new pins


def nearest_env(candidates, python, platform, keys):
    """The id of the finished env layer to derive a new one from, or None for a fresh venv.

    ``candidates`` is ``[(layer id, marker dict), ...]``; ``keys`` the new lock's content keys
    (:func:`builder.pinning.content_keys`). A candidate must have the same python and platform,
    share at least MIN_SHARED of ``keys``, and hold no ``name==version`` with other files than
    the new lock's (an installer keeps a distribution of the right name and version, whatever
    index it came from); a layer of before content keys, or an app's own (a pin without a hash),
    is never one. The most shared pins win, then the fewest extra ones (less to remove), then the
    id (so the choice is stable). Purely computational.
    """
    wanted = set(keys)
    by_requirement = {pinning.requirement_of(k): k for k in keys}
    best, best_rank = None, None
    for layer_id, marker in candidates:
        if marker.get("python") != python or marker.get("platform") != platform:
            continue
        if marker.get("pinned") is None or marker.get("own"):
            continue
        have = set(marker["pinned"])
        if any(by_requirement.get(pinning.requirement_of(k), k) != k for k in have):
            continue
        shared = len(wanted & have)
        if not wanted or shared < MIN_SHARED * len(wanted):
            continue
        rank = (-shared, len(have - wanted), layer_id)
        if best_rank is None or rank < best_rank:
            best, best_rank = layer_id, rank
    return best


def finished_layers(images_dir, kind):
    """``[(layer id, marker), ...]`` of the finished layers of ``kind`` in ``images_dir``."""
    folder = os.path.join(images_dir, kind)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in sorted(names):
        if name.endswith(".json") and len(name) == 64 + 5:
            layer_id = "sha256:" + name[:-5]
            marker = image_layout.read_layer_marker(images_dir, kind, layer_id)
            if marker is not None:
                out.append((layer_id, marker))
    return out


class LayerLock:
    """A lock on one layer among builders sharing the images dir (flock, polled): exclusive to make
    it, shared to derive from it or pack it; the pruner removes only a layer it can lock exclusively
    at once. ``suffix`` ".pack.lock" names the lock of the layer's archive, held by its packer."""

    def __init__(self, images_dir, kind, layer_id, stopping, poll=0.1, shared=False, suffix=".lock"):
        self.path = image_layout.layer_dir(images_dir, kind, layer_id) + suffix
        self.stopping = stopping
        self.poll = poll
        self.fd = None
        self.mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX   # shared: a build reading it (deriving)

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        while True:
            try:
                fcntl.flock(self.fd, self.mode | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if self.stopping():
                os.close(self.fd)
                raise BuildAbandoned("stopped while waiting for another build of the same layer")
            time.sleep(self.poll)   # green after corral.green.patch()

    def __exit__(self, *exc):
        os.close(self.fd)   # releases the flock


def build_env_layer(engine, *, images_dir, layer_id, python, pins, lock_text, log,
                    stopping, builder, progress=lambda phase: None):
    """Make env layer ``layer_id`` from a known lock unless finished; return its marker and whether it was there.

    A relocatable engine (uv) builds in ``env/.tmp-*`` and renames into place;
    another builds at the final path, the marker being the commit point.
    """
    with LayerLock(images_dir, "env", layer_id, stopping):
        marker = image_layout.read_layer_marker(images_dir, "env", layer_id)
        if marker is not None:
            return marker, True
        final = image_layout.layer_dir(images_dir, "env", layer_id)
        _remove_tree(final)
        target = _temp_beside(final) if engine.relocatable else final
        lock_file = engine.box.write_input("install-lock.txt", lock_text)
        base = None
        if engine.name == "uv":   # only from a layer of the same build identity (its own app's)
            base = nearest_env([(i, m) for i, m in finished_layers(images_dir, "env") if m.get("by") == engine.box.key],
                               python.version, python.platform, pinning.content_keys(pins))
        try:
            if base is not None:
                progress("install (from a similar environment)")
                with LayerLock(images_dir, "env", base, stopping, shared=True):   # not pruned meanwhile
                    if image_layout.read_layer_marker(images_dir, "env", base) is None:
                        raise BuildFailed(f"the environment {base} to start from was removed meanwhile")
                    image_layout.touch_layer(images_dir, "env", base)
                    _derive(image_layout.layer_dir(images_dir, "env", base), target, log=log, stopping=stopping)
                engine.box.hand_over(target, tree=True)
            else:
                engine.make_venv(python=python, dest=engine.box.make_folder(target), log=log, stopping=stopping)
            engine.install(venv=target, lock_file=lock_file, log=log, stopping=stopping, progress=progress)
            seal(target, engine.box.uid)
            if target != final:
                os.rename(target, final)
            marker = _env_marker(engine, images_dir, layer_id, python, pins, builder, base)
        except BaseException:
            _remove_tree(target)
            _remove_tree(final)
            raise
        return marker, False


def build_env_unresolved(engine, *, images_dir, python, requirements_file, cwd, log,
                         stopping, builder, source_digest, progress=lambda phase: None):
    """Resolve and install in one pass (an engine with ``install_unresolved``), then file the layer.

    Returns ``(pins, marker, was there)``. Used when no environment on this
    builder could serve as a base: the fetches then overlap the resolve. The
    layer's id is known only afterwards, so it is built aside and renamed;
    when another build made the same layer meanwhile, this copy is dropped.
    Its archive is packed afterwards (:func:`ensure_archive`).
    """
    tmp = _temp_beside(os.path.join(images_dir, "env", "unresolved"))
    try:
        engine.make_venv(python=python, dest=engine.box.make_folder(tmp), log=log, stopping=stopping)
        engine.install_requirements(venv=tmp, requirements_file=requirements_file, cwd=cwd, log=log,
                                    stopping=stopping, progress=progress)
        progress("lock")
        pins, _ = engine.lock_installed(venv=tmp, requirements_file=requirements_file, cwd=cwd,
                                        log=log, stopping=stopping)
        seal(tmp, engine.box.uid)
        layer_id = env_id_of_lock(python, pins, source_digest, engine.box.key)
        with LayerLock(images_dir, "env", layer_id, stopping):
            marker = image_layout.read_layer_marker(images_dir, "env", layer_id)
            if marker is not None:
                return pins, marker, True
            final = image_layout.layer_dir(images_dir, "env", layer_id)
            _remove_tree(final)
            os.rename(tmp, final)
            try:
                marker = _env_marker(engine, images_dir, layer_id, python, pins, builder, None)
            except BaseException:
                _remove_tree(final)
                raise
            return pins, marker, False
    finally:
        _remove_tree(tmp)


def _env_marker(engine, images_dir, layer_id, python, pins, builder, base):
    """Write the marker of the finished env layer ``layer_id`` (not packed yet); return it."""
    marker = {"id": layer_id, "kind": "env", "python": python.version, "platform": python.platform,
              "pins": [p.requirement for p in pins], "pinned": pinning.content_keys(pins),
              "own": any(not p.hashes for p in pins), "artifact_sha256": None, "size": None,
              "engine": engine.name, "derived_from": base, "built_by": builder, "by": engine.box.key}
    image_layout.write_layer_marker(images_dir, "env", layer_id, marker)
    return marker


def ensure_archive(*, images_dir, cache_dir, kind, layer_id, stopping=lambda: False):
    """``(hex sha256, size)`` of the archive of the finished layer ``layer_id``, packed first when it is not.

    A build ends once its layer folders are in place, which is all a node
    sharing the images dir needs; the archive a remote node fetches is packed
    here afterwards, and the sha256 and size are added to the layer's marker.
    Packers of one layer take turns (the worker after the build, a fetch that
    came first, a builder restarted after a kill mid-pack): the first packs,
    the others find it packed. Half an archive is never named (tar writes a
    temporary file, renamed when whole). An archive that once had a sha256 and
    is packed again must have the same one (what agents were told), else it is
    removed and OSError raised. FileNotFoundError when the layer is not
    finished here; BuildAbandoned when ``stopping()`` turns true while waiting.
    """
    dest = archives.archive_path(cache_dir, kind, image_layout.image_hex(layer_id))
    if image_layout.read_layer_marker(images_dir, kind, layer_id) is None:   # (no lock file made for any name asked)
        raise FileNotFoundError(f"{kind} layer {layer_id} is not finished here")
    with LayerLock(images_dir, kind, layer_id, stopping, shared=True), \
            LayerLock(images_dir, kind, layer_id, stopping, suffix=".pack.lock"):
        marker = image_layout.read_layer_marker(images_dir, kind, layer_id)
        if marker is None:
            raise FileNotFoundError(f"{kind} layer {layer_id} is not finished here")
        if marker.get("artifact_sha256") and os.path.exists(dest):
            return marker["artifact_sha256"], os.path.getsize(dest)
        sha, size = archives.pack_layer(image_layout.layer_dir(images_dir, kind, layer_id), dest)
        if marker.get("artifact_sha256") not in (None, sha):
            archives.remove(dest)
            raise OSError(f"{kind} layer {layer_id} packed again has sha256 {sha}, not the"
                          f" {marker['artifact_sha256']} it was recorded with: its folder changed")
        image_layout.write_layer_marker(images_dir, kind, layer_id, dict(marker, artifact_sha256=sha, size=size))
        return sha, size


def seal(folder, build_uid=None):
    """Make the layer at ``folder`` the builder's and read-only before its marker is written: every
    entry owned by the builder's user, files ``0444`` (``0555`` when executable: no write, set-id
    or sticky bit), folders ``0755``, no FIFO, socket or device; links are not followed. Called
    once no process of the build runs, so nothing the build left can change the layer afterwards
    (a file it shares an inode with, in its own cache, becomes the builder's too).

    ``build_uid``: the build user who wrote it (None: the builder itself, or no one). Then only
    what that user owns is changed; a file of anyone else, or one of the builder's that is linked
    elsewhere and not sealed yet, is a hard link the build made to a file that is not its own
    (where the kernel allows it) and BuildFailed is raised: sealing it would change the original.
    """
    uid, gid = os.getuid(), os.getgid()
    for top, dirs, files in os.walk(folder, topdown=False):
        for name in files + dirs:
            _seal_entry(os.path.join(top, name), uid, gid, build_uid)
    _seal_entry(folder, uid, gid, build_uid)


def _sealed_mode(st):
    """The mode a sealed layer gives an entry of ``st`` (folders 0755, files 0444/0555), or None."""
    if stat.S_ISDIR(st.st_mode):
        return 0o755
    if stat.S_ISREG(st.st_mode):
        return 0o555 if st.st_mode & 0o111 else 0o444
    return None


def _seal_entry(path, uid, gid, build_uid):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid == build_uid or (st.st_uid, st.st_gid) != (uid, gid) and build_uid is None:
            os.lchown(path, uid, gid)
        return
    mode = _sealed_mode(st)
    if build_uid is not None and st.st_uid != build_uid and not (
            st.st_uid == uid and (stat.S_IMODE(st.st_mode) == mode or st.st_nlink == 1)):
        raise BuildFailed(f"the build left {path} linked to a file that is not its own (owner uid {st.st_uid})")
    if mode is None:   # a FIFO, socket or device has no place in a layer
        os.unlink(path)
        return
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def _temp_beside(final):
    """A new temporary folder name beside ``final`` (same disk, so a rename moves it)."""
    return os.path.join(os.path.dirname(final), f".tmp-{uuid.uuid4().hex}")


def build_code_layer(*, images_dir, layer_id, python, staging, own_version, log, stopping, builder):
    """Make code layer ``layer_id`` from the unpacked source in ``staging`` unless finished.

    Returns its marker and whether it was there. The bytecode is compiled
    in-process when ``python`` is the builder's own version, else by
    ``python -m compileall``. ``staging`` is moved into place.
    """
    with LayerLock(images_dir, "code", layer_id, stopping):
        marker = image_layout.read_layer_marker(images_dir, "code", layer_id)
        if marker is not None:
            return marker, True
        final = image_layout.layer_dir(images_dir, "code", layer_id)
        _remove_tree(final)
        if python.version == own_version:
            compileall.compile_dir(staging, quiet=2, workers=1)
        else:
            run_logged([python.executable, "-m", "compileall", "-q", staging], log_path=log,
                       timeout=300, stopping=stopping)
        seal(staging)
        os.rename(staging, final)
        marker = {"id": layer_id, "kind": "code", "python": python.version, "artifact_sha256": None,
                  "size": None, "built_by": builder}
        image_layout.write_layer_marker(images_dir, "code", layer_id, marker)
        return marker, False


def _derive(base, dest, *, log, stopping):
    """Hard-link copy the env layer ``base`` to ``dest`` and make its scripts name ``dest``."""
    done = run_logged(["cp", "-a", "-l", base, dest], log_path=log, timeout=600, stopping=stopping)
    if done.returncode != 0 or done.timed_out:
        raise BuildFailed(f"could not copy the environment {base} to {dest} (see {log})")
    old, new = base.encode(), dest.encode()
    for folder in (os.path.join(dest, "bin"), dest):
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_size <= _SCRIPT_LIMIT:
                with open(entry.path, "rb") as f:
                    data = f.read()
                if old in data:
                    tmp = entry.path + ".corral-tmp"
                    with open(tmp, "wb") as f:
                        f.write(data.replace(old, new))
                    shutil.copymode(entry.path, tmp)
                    os.replace(tmp, entry.path)   # a new inode: the base keeps its own file


def _remove_tree(path):
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--", path], check=False)
