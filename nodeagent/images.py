"""Fetching images from the builder: download, verify, unpack, rename into place.

An image's id names its content (sha256 of its inputs), so a finished image
folder (one with :data:`corral.images.IMAGE_MARKER`) of the same id is used as
it is, whoever wrote it: this agent, another agent on the same machine, or a
builder sharing the images dir. The archive's sha256 is checked on every
download; a mismatch leaves nothing behind.
"""
import hashlib
import os
import secrets
import shutil
import tarfile
import time

import eventlet.semaphore
import requests

from corral import images

CHUNK = 1 << 16
TIMEOUT = (10, 60)   # connect, read: seconds


class ImageError(Exception):
    """An image could not be made ready; the message is one sentence."""


def ensure_image(images_dir, image_id, url, sha256):
    """The folder of image ``image_id``, fetched from ``url`` and verified against ``sha256`` if absent.

    Raises :class:`ImageError` on a bad id, a failed download, a digest
    mismatch or an unsafe archive, leaving no temporary file or folder.
    Not safe to call twice at once for one image in one process: use
    :class:`ImageCache`, which serializes per image.
    """
    try:
        final = images.image_dir(images_dir, image_id)
    except ValueError as e:
        raise ImageError(str(e)) from None
    if images.read_marker(images_dir, image_id) is not None:
        return final
    os.makedirs(images_dir, exist_ok=True)
    hexid = images.image_hex(image_id)
    archive = os.path.join(images_dir, f".dl-{hexid}-{secrets.token_hex(4)}")
    unpacked = os.path.join(images_dir, f".tmp-{hexid}-{secrets.token_hex(4)}")
    try:
        _download(url, archive, sha256, image_id)
        _unpack(archive, unpacked, image_id)
        try:
            os.rename(unpacked, final)
        except OSError:
            if images.read_marker(images_dir, image_id) is None:
                raise ImageError(f"image {image_id}: the folder {final} exists but is unfinished") from None
            return final  # another agent on this machine won the race; ours is discarded below
        images.write_marker(images_dir, image_id, {
            "image": image_id, "sha256": sha256, "url": url, "source": "agent", "fetched_at": time.time(),
        })
        return final
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
        if os.path.exists(unpacked):
            shutil.rmtree(unpacked, ignore_errors=True)


def _download(url, path, sha256, image_id):
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
            if resp.status_code != 200:
                raise ImageError(f"image {image_id}: GET {url} answered HTTP {resp.status_code}")
            with open(path, "wb") as f:
                for chunk in resp.iter_content(CHUNK):
                    digest.update(chunk)
                    f.write(chunk)
    except requests.RequestException as e:
        raise ImageError(f"image {image_id}: downloading {url} failed ({e.__class__.__name__}: {e})") from None
    if digest.hexdigest() != sha256:
        raise ImageError(f"image {image_id}: the archive from {url} has sha256 {digest.hexdigest()}, expected {sha256}")


def _unpack(archive, dest, image_id):
    os.mkdir(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                parts = member.name.replace("\\", "/").split("/")
                if member.name.startswith("/") or ".." in parts:
                    raise ImageError(f"image {image_id}: archive member {member.name!r} points outside the image folder")
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise ImageError(f"image {image_id}: archive member {member.name!r} is not a file, folder or link")
            # "tar" and not "data": a venv links to its base interpreter by absolute path.
            tar.extractall(dest, filter="tar")
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"image {image_id}: the archive cannot be unpacked ({e})") from None


class ImageCache:
    """:func:`ensure_image` with one fetch per image at a time: callers for the same image wait."""

    def __init__(self, images_dir, fetch=ensure_image):
        self.images_dir = images_dir
        self.fetch = fetch
        self.locks = {}

    def ensure(self, image_id, url, sha256):
        """The image's folder, fetched once even when many instances ask at once."""
        lock = self.locks.setdefault(image_id, eventlet.semaphore.Semaphore())
        with lock:
            return self.fetch(self.images_dir, image_id, url, sha256)
