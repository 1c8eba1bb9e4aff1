"""Making an image ready on this node: fetch the layers it lacks, verify, unpack, link.

An assigned instance names its image and the image's layers (``artifact =
{"layers": [{"kind": "env"|"code", "id", "url", "sha256", "size"}, ...]}``).
Ids name content, so a finished layer (one with its marker, see
:mod:`corral.images`) is used as it is, whoever wrote it: this agent,
another agent on the same machine, or a builder sharing the images dir. A
node that has the image does no work; one that has the environment fetches
only the code layer. Each download is checked against its sha256; a
mismatch or an unsafe archive leaves nothing behind. A layer is unpacked
into a temporary folder beside its place while it downloads (the body goes
straight into ``tar -x``, each member's header checked first by
:class:`TarScan`, the digest taken on the way and compared before the
rename), so the virtualenv lands at the same path as on the builder with
no archive file and no second pass; the env and code layers download at once.

Disk pressure (:mod:`nodeagent.disk`): before a fetch, the layers it lacks
must fit (archive and unpacked copy, twice their size) and still leave the
threshold free. If not, images this agent fetched that nothing uses (no
assigned instance of this agent, no process on the machine working in their
code) are deleted, least recently used first; if even that would not make
room, the image is refused with the figures in one sentence. A layer goes
marker first, so a half-deleted one is "unfinished", never used.
"""
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time

import eventlet.semaphore
import requests

from corral import images
from nodeagent import disk, fdio

CHUNK = 1 << 20
TIMEOUT = (10, 60)   # connect, read: seconds
RACE_WAIT_STEPS = 50  # tenths of a second to wait for another writer's marker on a layer


class ImageError(Exception):
    """An image could not be made ready; the message is one sentence."""


def layers_of(image_id, artifact):
    """The layers of an assignment's ``artifact`` as ``(env, code)`` dicts; ImageError when malformed."""
    layers = (artifact or {}).get("layers") if isinstance(artifact, dict) else None
    by_kind = {}
    for layer in layers or ():
        if isinstance(layer, dict) and layer.get("kind") in images.LAYER_KINDS:
            by_kind[layer["kind"]] = layer
    if set(by_kind) != set(images.LAYER_KINDS):
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
        final = images.image_dir(images_dir, image_id)
        if images.read_marker(images_dir, image_id) is not None:
            return final
        env, code = layers_of(image_id, artifact)
        _ensure_layers(images_dir, [env, code])
        return images.link_image(images_dir, image_id, env["id"], code["id"],
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
    final = images.layer_dir(images_dir, kind, layer_id)
    if images.read_layer_marker(images_dir, kind, layer_id) is not None:
        return final
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    hexid = images.image_hex(layer_id)
    unpacked = os.path.join(parent, f".tmp-{hexid}-{secrets.token_hex(4)}")
    try:
        size = _fetch_unpack(layer.get("url", ""), unpacked, layer.get("sha256"), f"{kind} layer {layer_id}")
        try:
            os.rename(unpacked, final)
        except OSError:
            # Another agent on this machine renamed its copy first and is about to mark it,
            # or a crash left an unmarked folder: wait for the marker, then replace a leftover.
            for _ in range(RACE_WAIT_STEPS):
                if images.read_layer_marker(images_dir, kind, layer_id) is not None:
                    return final
                time.sleep(0.1)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(unpacked, final)
        try:
            images.write_layer_marker(images_dir, kind, layer_id, {
                "id": layer_id, "kind": kind, "artifact_sha256": layer.get("sha256"), "url": layer.get("url"),
                "source": "agent", "fetched_at": time.time(), "size": size})
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)   # unmarked, so unused: nothing half made stays
            raise
        return final
    finally:
        if os.path.exists(unpacked):
            shutil.rmtree(unpacked, ignore_errors=True)


def _fetch_unpack(url, dest, sha256, what):
    """Download the archive at ``url`` and unpack it into the new folder ``dest`` as it arrives; return its size.

    The body goes to the ``tar`` command (several times faster than tarfile
    for a 16k-file environment) while it downloads, hashed on the way; tar
    is handed each member only after :class:`TarScan` passed its header, so
    nothing lands outside ``dest`` even before the digest is known. The
    digest is checked once the body is complete; on a mismatch, an unsafe
    member or an unreadable archive, ImageError and the caller drops ``dest``.
    """
    os.mkdir(dest)
    digest, scan, size = hashlib.sha256(), TarScan(), 0
    with tempfile.TemporaryFile() as errors:
        # A venv links to its base interpreter by absolute path: symlink targets are kept as they are.
        # Our own pipe, written with fdio: a green pipe's write spins for ever once tar has exited.
        feed_r, feed_w = os.pipe()
        try:
            tar = subprocess.Popen(["tar", "--extract", "--file=-", "--directory", dest, "--no-same-owner",
                                    "--delay-directory-restore"], stdin=feed_r, stdout=subprocess.DEVNULL,
                                   stderr=errors)
        except BaseException:
            os.close(feed_w)
            raise
        finally:
            os.close(feed_r)
        os.set_blocking(feed_w, False)
        tar_open = True
        try:
            try:
                with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
                    if resp.status_code != 200:
                        raise ImageError(f"{what}: GET {url} answered HTTP {resp.status_code}")
                    pending = bytearray()
                    for chunk in resp.iter_content(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        pending += chunk
                        release = scan.feed(chunk) - (size - len(pending))
                        if release > 0:
                            tar_open = tar_open and fdio.write_all(feed_w, pending[:release])
                            del pending[:release]   # (tar gone early: its reason is read below)
                        if scan.finished:   # past the archive's end: hashed, never given to tar
                            del pending[:]
            except requests.RequestException as e:
                raise ImageError(f"{what}: downloading {url} failed ({e.__class__.__name__}: {e})") from None
            except ValueError as e:
                raise ImageError(f"{what}: archive {e}") from None
            if digest.hexdigest() != sha256:
                raise ImageError(f"{what}: the archive from {url} has sha256 {digest.hexdigest()}, expected {sha256}")
            if pending or not scan.complete():
                raise ImageError(f"{what}: the archive cannot be read (it ends inside a member)")
            fdio.close_fd(feed_w)
            feed_w = None
            if tar.wait() != 0:
                errors.seek(0)
                reason = errors.read().decode("utf-8", "replace").strip().splitlines()
                raise ImageError(f"{what}: the archive cannot be unpacked ({reason[-1] if reason else tar.returncode})")
        finally:
            if tar.returncode is None:
                tar.kill()
                tar.wait()
            if feed_w is not None:
                fdio.close_fd(feed_w)
    return size


def unsafe_member(name, kind, linkname, links):
    """Why an archive member may not be unpacked into a layer folder, or None when it may (pure).

    ``kind`` is "file", "dir", "symlink", "hardlink" or anything else;
    ``links`` the names of the symlinks seen so far in the archive: a member
    under one of them would be written through the link, wherever it points.
    """
    parts = _parts(name)
    if name.startswith("/") or ".." in parts:
        return "points outside the layer folder"
    if kind not in ("file", "dir", "symlink", "hardlink"):
        return "is not a file, folder or link"
    if kind == "hardlink" and (linkname.startswith("/") or ".." in linkname.split("/")):
        return "links to a file outside the layer folder"
    target = _parts(linkname) if kind == "hardlink" else []
    for i in range(1, len(target)):
        if "/".join(target[:i]) in links:
            return "links to a file through a symbolic link"
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            return "would be written through a symbolic link"
    return None


def _parts(name):
    """The path parts of an archive member's name, without empty and "." parts."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


class TarScan:
    """Follows a tar stream's headers as its bytes arrive and says how much of it may be unpacked.

    :meth:`feed` takes the next bytes and returns the stream offset up to
    which every member has passed :func:`unsafe_member` (the bytes a member
    depends on, its GNU long-name or pax records included, are held back
    until its own header is checked); it raises ValueError naming the first
    member that fails. Reads ustar, GNU and pax headers; a member other than
    a file with data, a pax global header, a GNU sparse file, and a bad
    header checksum are refused rather than guessed at. Pure: no I/O.
    """

    _META_LIMIT = 1 << 20   # bytes of a long name or pax record set

    def __init__(self):
        self._buf = bytearray()   # bytes not yet consumed
        self._at = 0              # stream offset of _buf[0]
        self._skip = 0            # data bytes of the current member still to pass
        self._meta = None         # (type, bytes wanted) of a long name or pax record being collected
        self._next = {}           # what long names and pax records say of the next member
        self._links = set()
        self.safe = 0
        self.ended = None         # offset just after the first zero block at a member boundary
        self.finished = False     # past the end-of-archive marker: nothing more is ever released

    def complete(self):
        """Whether the stream so far ends between members (nothing half read)."""
        return not self._buf and not self._skip and self._meta is None and not self._next

    def feed(self, data):
        """Take the next ``data``; return the offset up to which the stream may be unpacked."""
        self._buf += data
        while True:
            if self.ended is not None:
                return self._trailer()
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._at += n
                self._skip -= n
                if not self._next and self._meta is None:
                    self.safe = self._at
                if self._skip:
                    return self.safe
            if self._meta is not None:
                kind, want = self._meta
                if len(self._buf) < _padded(want):
                    return self.safe
                self._take_meta(kind, bytes(self._buf[:want]))
                del self._buf[:_padded(want)]
                self._at += _padded(want)
                self._meta = None
                continue
            if len(self._buf) < 512:
                return self.safe
            block = bytes(self._buf[:512])
            del self._buf[:512]
            self._at += 512
            self._header(block)

    def _trailer(self):
        """After the end-of-archive: release the marker's second zero block, if it is one, and
        consume the rest (a writer's record padding, which tar never reads) without releasing it."""
        if not self.finished:
            if len(self._buf) < 512:
                return self.safe
            if self._buf[:512] == bytes(512):
                self.safe = self.ended + 512
            self.finished = True
        self._at += len(self._buf)
        del self._buf[:]
        return self.safe

    def _header(self, block):
        if block == bytes(512):
            if not self._next and self._meta is None:
                self.safe = self.ended = self._at
            return
        stored = _number(block[148:156])
        rest = block[:148] + block[156:]
        unsigned = sum(rest) + 8 * 32   # the checksum field counts as eight spaces
        # Some old tars summed signed bytes: each byte over 127 then counts 256 less. (Counted with
        # translate, in C: a Python loop over every header byte was a third of an image fetch's CPU.)
        if stored != unsigned and stored != unsigned - 256 * len(rest.translate(None, _ASCII)):
            raise ValueError(f"header at offset {self._at - 512} has a bad checksum")
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\x00" and block[345]:
            name = _cstr(block[345:500]) + "/" + name
        size, flag, linkname = _number(block[124:136]), block[156:157], _cstr(block[157:257])
        if flag in (b"L", b"K", b"x"):
            if size > self._META_LIMIT:
                raise ValueError(f"header at offset {self._at - 512} carries {size} bytes of names")
            self._meta = (flag, size)
            return
        name = self._next.pop("path", name)
        linkname = self._next.pop("linkpath", linkname)
        size = int(self._next.pop("size", size))
        sparse = self._next.pop("sparse", False)
        kind = {b"0": "file", b"\x00": "file", b"7": "file", b"5": "dir", b"2": "symlink",
                b"1": "hardlink"}.get(flag, "other")
        why = unsafe_member(name, "other" if sparse else kind, linkname, self._links)
        if why is None and size and kind != "file":
            why = "has data but is not a file"
        if why:
            raise ValueError(f"member {name!r} {why}")
        if kind == "symlink":
            self._links.add("/".join(_parts(name)))
        self._skip = _padded(size)
        if not self._skip:
            self.safe = self._at

    def _take_meta(self, flag, data):
        if flag == b"L":
            self._next["path"] = _cstr(data)
        elif flag == b"K":
            self._next["linkpath"] = _cstr(data)
        else:
            for key, value in _pax_records(data):
                if key in ("path", "linkpath"):
                    self._next[key] = value
                elif key == "size":
                    self._next["size"] = int(value)
                elif key.startswith("GNU.sparse."):
                    self._next["sparse"] = True


def _padded(n):
    return (n + 511) // 512 * 512


_ASCII = bytes(range(128))


def _cstr(field):
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(field):
    """A header's numeric field: octal text, or base-256 when its first byte has the high bit set."""
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ValueError(f"header field {field!r} is not a number") from None


def _pax_records(data):
    """``(key, value)`` of pax extended header records (``"<len> <key>=<value>\\n"``)."""
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or data[pos] == 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ValueError("pax header cannot be read") from None
        if length <= space - pos:
            raise ValueError("pax header has a record shorter than its length field")
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        yield key.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
        pos += length


def missing_bytes(images_dir, artifact):
    """Bytes a fetch of ``artifact``'s missing layers needs on disk: archive plus unpacked copy of each."""
    try:
        env, code = layers_of("image", artifact)
    except ImageError:
        return 0
    return sum(2 * int(layer.get("size") or 0) for layer in (env, code)
               if images.read_layer_marker(images_dir, layer["kind"], layer.get("id")) is None)


def installed(images_dir):
    """The finished images in ``images_dir``: ``[(image id, last used, source, (env key, code key))]``,
    a layer key being ``(kind, layer id)``; last used is the mtime of the image's marker."""
    out = []
    for name in os.listdir(images_dir):
        marker = os.path.join(images_dir, name, images.IMAGE_MARKER)
        facts = images._read_json(marker) if len(name) == 64 else None
        if not isinstance(facts, dict) or not isinstance(facts.get("layers"), list):
            continue
        try:
            keys = tuple((layer["kind"], layer["id"]) for layer in facts["layers"])
            used = os.stat(marker).st_mtime
        except (OSError, KeyError, TypeError):
            continue
        out.append((f"sha256:{name}", used, facts.get("source"), keys))
    return out


def make_room(images_dir, need, in_use, worked_in=images.working_dirs):
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
        code = images.layer_dir(images_dir, "code", dict(keys).get("code", "sha256:" + "0" * 64))
        if source == "agent" and image_id not in in_use and code not in cwds:
            candidates.append((image_id, used, keys))
        else:
            keep.update(keys)
    for _, _, keys in candidates:
        for kind, layer_id in keys:
            marker = images.read_layer_marker(images_dir, kind, layer_id) or {}
            if marker.get("source") != "agent":
                keep.add((kind, layer_id))
            sizes[(kind, layer_id)] = int(marker.get("size") or 0)
    gone_images, gone_layers, fits = disk.evictions(candidates, sizes, keep, free, total, need)
    if not fits:
        mib = 1024 * 1024
        raise ImageError(f"not enough disk space to unpack it: it needs {need / mib:.1f} MiB, {free / mib:.1f} MiB "
                         f"are free and {disk.threshold(total) / mib:.1f} MiB must stay free (disk pressure), "
                         f"even with every unused image deleted")
    for image_id in gone_images:
        shutil.rmtree(images.image_dir(images_dir, image_id), ignore_errors=True)
    for kind, layer_id in gone_layers:
        try:
            os.unlink(images.layer_marker_path(images_dir, kind, layer_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(images.layer_dir(images_dir, kind, layer_id), ignore_errors=True)
    return gone_images


class ImageCache:
    """:func:`ensure_image` with one fetch per image at a time (callers for the same image wait),
    room made on the disk first, and each use recorded for least-recently-used eviction.
    ``in_use()`` returns the image ids the agent's instances run."""

    def __init__(self, images_dir, fetch=ensure_image, in_use=set):
        self.images_dir = images_dir
        self.fetch = fetch
        self.in_use = in_use
        self.locks = {}
        self.room = eventlet.semaphore.Semaphore()

    def ensure(self, image_id, artifact):
        """The image's folder, fetched once even when many instances ask at once.

        Raises :class:`ImageError` (one sentence) when it cannot be made ready,
        a lack of disk space included."""
        lock = self.locks.setdefault(image_id, eventlet.semaphore.Semaphore())
        with lock:
            try:
                if images.read_marker(self.images_dir, image_id) is None:
                    with self.room:
                        make_room(self.images_dir, missing_bytes(self.images_dir, artifact),
                                  set(self.in_use()) | {image_id})
                folder = self.fetch(self.images_dir, image_id, artifact)
                os.utime(os.path.join(folder, images.IMAGE_MARKER))
                return folder
            except ImageError as e:
                raise ImageError(f"image {image_id}: {e}" if not str(e).startswith("image ") else str(e)) from None
            except (OSError, ValueError) as e:
                raise ImageError(f"image {image_id}: its folder could not be made ready ({e})") from None
