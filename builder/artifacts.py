"""Image archives: what the builder serves and agents download.

An artifact is ``<cache dir>/artifacts/<hex>.tar.gz``: a gzip'd tar of the
image folder's contents (``venv/...``, ``app/...``), member names relative
to the folder, symlinks kept as symlinks (a venv's ``bin/python`` points at
its interpreter). The image marker is left out: the receiver writes its own
once it has verified and unpacked the archive. The archive is written to a
temporary name and renamed, so a reader never sees half an archive.
"""
import hashlib
import os
import tarfile

from corral.images import IMAGE_MARKER

_CHUNK = 1 << 16


def artifact_path(cache_dir, hex_digest):
    """Where the archive of image ``sha256:<hex_digest>`` lives."""
    return os.path.join(cache_dir, "artifacts", f"{hex_digest}.tar.gz")


def sha256_file(path):
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_image(folder, dest):
    """Write ``folder``'s contents as tar.gz to ``dest`` (atomically); return its hex sha256."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.tmp"
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for name in sorted(os.listdir(folder)):
                if name == IMAGE_MARKER or name.startswith(IMAGE_MARKER):
                    continue
                tar.add(os.path.join(folder, name), arcname=name, recursive=True)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        sha = sha256_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise
    return sha


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
