"""Layer archives: what the builder serves and agents download.

A layer's archive is ``<cache dir>/artifacts/<kind>-<hex>.tar``: an
uncompressed tar of the layer folder's contents, member names relative to
the folder, symlinks kept as symlinks (a venv's ``bin/python`` points at its
interpreter). Uncompressed because packing is on every build's path and
unpacking on every node's: gzip would cost seconds for a 150 MB
environment and save little on a local network. The tar is written by
the ``tar`` command and hashed as it streams past, to a temporary name then
renamed, so a reader never sees half an archive.
"""
import hashlib
import os
import subprocess

_CHUNK = 1 << 20


def artifact_path(cache_dir, kind, hex_digest):
    """Where the archive of layer ``sha256:<hex_digest>`` of ``kind`` lives."""
    return os.path.join(cache_dir, "artifacts", f"{kind}-{hex_digest}.tar")


def sha256_file(path):
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_layer(folder, dest):
    """Write ``folder``'s contents as a tar to ``dest`` (atomically); return ``(hex sha256, size)``.

    Raises OSError naming the folder when ``tar`` fails.
    """
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            proc = subprocess.Popen(["tar", "--create", "--file=-", "--sort=name", "--numeric-owner",
                                     "--directory", folder, "."],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            for chunk in iter(lambda: proc.stdout.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            err = proc.stderr.read().decode("utf-8", "replace").strip()
            if proc.wait() != 0:
                raise OSError(f"tar could not pack {folder}: {err or 'exit status %d' % proc.returncode}")
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise
    return digest.hexdigest(), size


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
