"""Making an image ready on this node: fetch the layers it lacks, verify, unpack, link.

An assigned instance names its image and the image's layers (``artifact =
{"layers": [{"kind": "env"|"code", "id", "url", "sha256", "size"}, ...]}``).
Ids name content, so a finished layer (one with its marker, see
:mod:`corral.image_layout`) is used as it is, whoever wrote it: this agent,
another agent on the same machine, or a builder sharing the images dir. A
node that has the image does no work; one that has the environment fetches
only the code layer (the env and code layers download at once).

A layer is downloaded first, whole, to a scratch file in the images dir
(an ``O_EXCL`` name unlinked at once), hashed on the way; only a body whose
sha256 is the one the assignment names is unpacked, into a temporary
folder beside its place that is renamed into place when whole, so the
virtualenv lands at the same path as on the builder. Unpacking is
:mod:`nodeagent.extract` driven by :mod:`nodeagent.tarscan`, one parser
that both decides and describes what is written: no set-id file, device,
FIFO, link out of the layer, name out of it, or write through a link; the
files come out owned by the agent (root in production), not writable by
others, readable by app users. A mismatch, a broken download or an unsafe
archive leaves nothing behind: no scratch file, no folder.

Disk pressure (:mod:`nodeagent.disk`): before a fetch, the layers it lacks
must fit (archive and unpacked copy, twice their size) and still leave the
threshold free. If not, images this agent fetched that nothing uses (no
assigned instance of this agent, no process on the machine working in their
code) are deleted, least recently used first; if even that would not make
room, the image is refused with the figures in one sentence. A layer goes
marker first, so a half-deleted one is "unfinished", never used.
"""
import contextlib
import os
import secrets
import shutil
import threading
import time

import eventlet.semaphore

from corral import image_layout
from corral.layer_download import DownloadFailed, download, shown
from corral.spec.quantities import format_size
from nodeagent import disk
from nodeagent.extract import extract
from nodeagent.tarscan import UnsafeLayer

TIMEOUT = (10, 60)   # connect, read: seconds
RACE_WAIT_STEPS = 50  # tenths of a second to wait for another writer's marker on a layer


class ImageError(Exception):
    """An image could not be made ready; the message is one sentence."""


def layers_of(image_id, artifact):
    """The layers of an assignment's ``artifact`` as ``(env, code)`` dicts; ImageError when malformed."""
    layers = (artifact or {}).get("layers") if isinstance(artifact, dict) else None
    by_kind = {}
    for layer in layers or ():
        if isinstance(layer, dict) and layer.get("kind") in image_layout.LAYER_KINDS:
            by_kind[layer["kind"]] = layer
    if set(by_kind) != set(image_layout.LAYER_KINDS):
        raise ImageError(f"image {image_id}: the assignment does not name both its env and code layers")
    return by_kind["env"], by_kind["code"]


def ensure_image(images_dir, image_id, artifact):
    """The folder of image ``image_id``, its missing layers fetched, verified and unpacked first.

    Raises :class:`ImageError` on a bad id, a failed download, a digest
    mismatch or an unsafe archive, leaving no temporary file or folder.
    Not safe to call twice at once for one image in one process: use
    :class:`ImageCache`, which serializes per image.
    """
    try:
        final = image_layout.image_dir(images_dir, image_id)
        if image_layout.read_marker(images_dir, image_id) is not None:
            return final
        env, code = layers_of(image_id, artifact)
        _ensure_layers(images_dir, [env, code])
        return image_layout.link_image(images_dir, image_id, env["id"], code["id"],
                                 {"image": image_id, "layers": [env, code], "source": "agent",
                                  "fetched_at": time.time()}, tmp_suffix=f"tmp-{secrets.token_hex(4)}")
    except ValueError as e:
        raise ImageError(f"image {image_id}: {e}") from None
    except OSError as e:
        raise ImageError(f"image {image_id}: its folder could not be made ready ({e})") from None


def _ensure_layers(images_dir, layers):
    """Make every layer in ``layers`` ready, all downloading at once; the first failure is raised
    once all have ended (a layer that did finish is kept: it is whole and marked)."""
    failures = []

    def one(layer):
        try:
            ensure_layer(images_dir, layer)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
            failures.append(e)

    threads = [threading.Thread(target=one, args=(layer,), daemon=True) for layer in layers[1:]]
    for thread in threads:
        thread.start()
    one(layers[0])
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def ensure_layer(images_dir, layer):
    """The folder of ``layer`` (an assignment's layer dict), downloaded and unpacked when absent."""
    kind, layer_id = layer["kind"], layer.get("id")
    final = image_layout.layer_dir(images_dir, kind, layer_id)
    if image_layout.read_layer_marker(images_dir, kind, layer_id) is not None:
        return final
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    hexid = image_layout.image_hex(layer_id)
    unpacked = os.path.join(parent, f".tmp-{hexid}-{secrets.token_hex(4)}")
    try:
        size = _fetch_unpack(layer_urls(layer), unpacked, layer.get("sha256"), f"{kind} layer {layer_id}",
                             layer.get("size"))
        try:
            os.rename(unpacked, final)
        except OSError:
            # Another agent on this machine renamed its copy first and is about to mark it,
            # or a crash left an unmarked folder: wait for the marker, then replace a leftover.
            for _ in range(RACE_WAIT_STEPS):
                if image_layout.read_layer_marker(images_dir, kind, layer_id) is not None:
                    return final
                time.sleep(0.1)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(unpacked, final)
        try:
            image_layout.write_layer_marker(images_dir, kind, layer_id, {
                "id": layer_id, "kind": kind, "artifact_sha256": layer.get("sha256"), "url": shown(layer.get("url")),
                "source": "agent", "fetched_at": time.time(), "size": size})
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)   # unmarked, so unused: nothing half made stays
            raise
        return final
    finally:
        if os.path.exists(unpacked):
            shutil.rmtree(unpacked, ignore_errors=True)


def _fetch_unpack(urls, dest, sha256, what, size=None):
    """Download the archive from the first of ``urls`` that serves it whole, check it is
    ``sha256``, then unpack it into the new folder ``dest``; return the archive's size.

    The body goes to a scratch file beside ``dest`` (:func:`_scratch_file`:
    nameless once open, so no failure or kill leaves it behind), hashed on
    the way; a body longer than ``size`` (the assignment's, when given) is cut
    off there. Only a body whose sha256 matches is unpacked, by
    :func:`nodeagent.extract.extract`: members as :mod:`nodeagent.tarscan`
    decides (one parser for the check and the writing). On a failed
    download, a mismatch, an unsafe member or an unreadable archive,
    ImageError (one sentence) and the caller drops ``dest``.
    """
    with _scratch_file(os.path.dirname(dest) or ".") as fd:
        length = _download(urls, fd, sha256, what, size)
        try:
            extract(fd, length, dest)
        except UnsafeLayer as e:
            raise ImageError(f"{what}: refused: {e}") from None
        except OSError as e:
            raise ImageError(f"{what}: the archive cannot be unpacked ({e.strerror or e}"
                             f"{': ' + e.filename if isinstance(e.filename, str) else ''})") from None
    return length


def layer_urls(layer):
    """The URLs to fetch ``layer`` from, in order: its ``urls`` (the layer on every live builder)
    when the assignment gives them, else its one ``url``."""
    urls = layer.get("urls")
    if isinstance(urls, list) and urls and all(isinstance(u, str) for u in urls):
        return urls
    return [layer.get("url", "")]


@contextlib.contextmanager
def _scratch_file(folder):
    """A new file in ``folder`` open for reading and writing, as a descriptor: made under a fresh
    ``O_EXCL`` name, which is unlinked at once (the file lives while the descriptor does)."""
    path = os.path.join(folder, f".download-{secrets.token_hex(8)}.tar")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.unlink(path)
        yield fd
    finally:
        os.close(fd)


def _download(urls, fd, sha256, what, size=None):
    """Write the archive to ``fd`` from the first of ``urls`` that gives it whole with its sha256
    ``sha256`` (:func:`corral.layer_download.download`); return its length. Each URL is tried on an
    emptied file: a builder down, one without the layer, one refusing the credential or serving
    other bytes, and the next is asked. ImageError (naming why each failed) when none gives it."""
    failures = []
    for url in urls:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            return download(url, fd, sha256, size, TIMEOUT)
        except DownloadFailed as e:
            failures.append(str(e))
    raise ImageError(f"{what}: " + "; then ".join(failures or ["the assignment names no URL for it"]))


def missing_layers(images_dir, artifact):
    """The layers of ``artifact`` (its layer dicts) not yet in ``images_dir``; [] when it is malformed."""
    try:
        env, code = layers_of("image", artifact)
    except ImageError:
        return []
    return [layer for layer in (env, code)
            if image_layout.read_layer_marker(images_dir, layer["kind"], layer.get("id")) is None]


def missing_bytes(images_dir, artifact):
    """Bytes a fetch of ``artifact``'s missing layers needs on disk: archive plus unpacked copy of each."""
    return sum(2 * int(layer.get("size") or 0) for layer in missing_layers(images_dir, artifact))


def fetched_bytes(images_dir, layers):
    """Bytes of the archives downloaded for ``layers``, as their markers record them."""
    return sum(int((image_layout.read_layer_marker(images_dir, layer["kind"], layer.get("id")) or {}).get("size") or 0)
               for layer in layers)


def installed(images_dir):
    """The finished images in ``images_dir``: ``[(image id, last used, source, (env key, code key))]``,
    a layer key being ``(kind, layer id)``; last used is the mtime of the image's marker."""
    out = []
    for name in os.listdir(images_dir):
        marker = os.path.join(images_dir, name, image_layout.IMAGE_MARKER)
        facts = image_layout._read_json(marker) if len(name) == 64 else None
        if not isinstance(facts, dict) or not isinstance(facts.get("layers"), list):
            continue
        try:
            keys = tuple((layer["kind"], layer["id"]) for layer in facts["layers"])
            used = os.stat(marker).st_mtime
        except (OSError, KeyError, TypeError):
            continue
        out.append((f"sha256:{name}", used, facts.get("source"), keys))
    return out


def make_room(images_dir, need, in_use, worked_in=image_layout.working_dirs):
    """Delete unused images (and their layers no other image uses) until ``need`` bytes fit above the
    disk pressure threshold. Raises :class:`ImageError` when they cannot; ``in_use`` is the set of
    image ids this agent's instances run."""
    st = os.statvfs(images_dir)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    if disk.room_for(free, total, need):
        return []
    cwds = worked_in()
    candidates, keep, sizes = [], set(), {}
    for image_id, used, source, keys in installed(images_dir):
        code = image_layout.layer_dir(images_dir, "code", dict(keys).get("code", "sha256:" + "0" * 64))
        if source == "agent" and image_id not in in_use and code not in cwds:
            candidates.append((image_id, used, keys))
        else:
            keep.update(keys)
    for _, _, keys in candidates:
        for kind, layer_id in keys:
            marker = image_layout.read_layer_marker(images_dir, kind, layer_id) or {}
            if marker.get("source") != "agent":
                keep.add((kind, layer_id))
            sizes[(kind, layer_id)] = int(marker.get("size") or 0)
    gone_images, gone_layers, fits = disk.evictions(candidates, sizes, keep, free, total, need)
    if not fits:
        raise ImageError(f"not enough disk space to unpack it: it needs {format_size(need)}, {format_size(free)} "
                         f"are free and {format_size(disk.threshold(total))} must stay free (disk pressure), "
                         f"even with every unused image deleted")
    for image_id in gone_images:
        shutil.rmtree(image_layout.image_dir(images_dir, image_id), ignore_errors=True)
    for kind, layer_id in gone_layers:
        try:
            os.unlink(image_layout.layer_marker_path(images_dir, kind, layer_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(image_layout.layer_dir(images_dir, kind, layer_id), ignore_errors=True)
    return gone_images


def fresher(artifact, latest):
    """``latest`` (the same image's artifact in a newer assignment) when it names exactly the layers
    ``artifact`` does (kind, id, sha256, size), so only its URLs differ (signed anew, other
    builders); else ``artifact``. What is checked stays what the instance was assigned. Pure."""
    def pinned(a):
        try:
            return sorted((layer.get("kind"), layer.get("id"), layer.get("sha256"), layer.get("size"))
                          for layer in a["layers"])
        except (TypeError, KeyError, AttributeError):
            return None
    if latest is None or latest is artifact:
        return artifact
    mine = pinned(artifact)
    return latest if mine is not None and mine == pinned(latest) else artifact


class ImageCache:
    """:func:`ensure_image` with one fetch per image at a time (callers for the same image wait),
    room made on the disk first, and each use recorded for least-recently-used eviction.
    A fetch uses the newest URLs the agent was given for the image (:meth:`offer`): an
    instance retrying after a long backoff holds URLs the leader signed lately.
    ``in_use()`` returns the image ids the agent's instances run; ``on_fetch(ok, bytes, seconds)``
    is told of each fetch of an image that was not there (the bytes of the archives downloaded)."""

    def __init__(self, images_dir, fetch=ensure_image, in_use=set, on_fetch=None):
        self.images_dir = images_dir
        self.fetch = fetch
        self.in_use = in_use
        self.on_fetch = on_fetch
        self.locks = {}
        self.room = eventlet.semaphore.Semaphore()
        self.latest = {}   # image id -> its artifact in the latest assignment accepted

    def offer(self, entries):
        """Remember each image's artifact in ``entries`` (the instances of the assignment just accepted)."""
        self.latest = {e["image"]: e["artifact"] for e in entries if isinstance(e.get("artifact"), dict)}

    def ensure(self, image_id, artifact):
        """The image's folder, fetched once even when many instances ask at once.

        Raises :class:`ImageError` (one sentence) when it cannot be made ready,
        a lack of disk space included."""
        lock = self.locks.setdefault(image_id, eventlet.semaphore.Semaphore())
        artifact = fresher(artifact, self.latest.get(image_id))
        with lock:
            began, missing = time.monotonic(), None
            try:
                if image_layout.read_marker(self.images_dir, image_id) is None:
                    missing = missing_layers(self.images_dir, artifact)
                    with self.room:
                        make_room(self.images_dir, missing_bytes(self.images_dir, artifact),
                                  set(self.in_use()) | {image_id})
                folder = self.fetch(self.images_dir, image_id, artifact)
                os.utime(os.path.join(folder, image_layout.IMAGE_MARKER))
            except ImageError as e:
                self._fetched(missing, False, began)
                raise ImageError(f"image {image_id}: {e}" if not str(e).startswith("image ") else str(e)) from None
            except (OSError, ValueError) as e:
                self._fetched(missing, False, began)
                raise ImageError(f"image {image_id}: its folder could not be made ready ({e})") from None
            self._fetched(missing, True, began)
            return folder

    def _fetched(self, missing, ok, began):
        """Tell ``on_fetch`` of a fetch of the ``missing`` layers (None: the image was there, nothing fetched)."""
        if missing is not None and self.on_fetch is not None:
            size = fetched_bytes(self.images_dir, missing) if ok else 0
            self.on_fetch(ok, size, time.monotonic() - began)
