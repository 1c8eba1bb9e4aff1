"""Layer archives: what the builder serves and agents download.

A layer's archive is ``<cache dir>/artifacts/<kind>-<hex>.tar``: an
uncompressed tar of the layer folder's contents, member names relative to
the folder, symlinks kept as symlinks (a venv's ``bin/python`` points at its
interpreter). Uncompressed because packing is on every build's path and
unpacking on every node's: gzip would cost seconds for a 150 MB
environment and save little on a local network. The tar is written by
the ``tar`` command and hashed as it streams past, to a temporary name then
renamed, so a reader never sees half an archive. Packing comes after the
build is recorded (builder.layers.ensure_archive).
"""
import fcntl
import hashlib
import os
import subprocess
import threading
import uuid

_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031   # fcntl: a pipe's buffer size (Linux)


def archive_path(cache_dir, kind, hex_digest):
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
    packing = Packing(folder, os.path.dirname(dest))
    try:
        found = packing.wait()
        packing.commit(dest)
    finally:
        packing.discard()
    return found


class Packing:
    """A layer's archive being written in the background: ``tar`` reads the folder while the
    caller goes on (making the lock, say); :meth:`wait` gives ``(hex sha256, size)``, then
    :meth:`commit` names the archive, or :meth:`discard` drops it (and stops tar).

    The archive goes to a temporary file in ``folder_out`` (so it may be packed before
    its layer's id, and so its final name, is known); a reader never sees half of one.
    A thread (green under eventlet) moves tar's output to the file, hashing it on the way.
    """

    def __init__(self, folder, folder_out):
        os.makedirs(folder_out, exist_ok=True)
        self.folder = folder
        self.tmp = os.path.join(folder_out, f".pack-{os.getpid()}-{uuid.uuid4().hex}.tmp")
        self._out = open(self.tmp, "wb")
        # tar's default 10 KiB records: larger ones pad the archive past its end-of-archive
        # blocks, which the agent's tar -x stops reading at (a 128 KiB record hung a fetch)
        self._proc = subprocess.Popen(["tar", "--create", "--file=-",
                                       "--sort=name", "--numeric-owner", "--directory", folder, "."],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            fcntl.fcntl(self._proc.stdout.fileno(), _F_SETPIPE_SZ, _CHUNK)   # fewer, larger reads
        except OSError:
            pass
        self._found = None
        self._error = None
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self):
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in iter(lambda: self._proc.stdout.read(_CHUNK), b""):
                digest.update(chunk)
                self._out.write(chunk)
                size += len(chunk)
            err = self._proc.stderr.read().decode("utf-8", "replace").strip()
            if self._proc.wait() != 0:
                raise OSError(f"tar could not pack {self.folder}: {err or 'exit status %d' % self._proc.returncode}")
            self._out.close()
            self._found = (digest.hexdigest(), size)
        except BaseException as exc:  # noqa: BLE001 - handed to wait()
            self._error = exc

    def wait(self):
        """``(hex sha256, size)`` of the finished archive; the OSError of a failed tar."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._found

    def commit(self, dest):
        """Give the finished archive its name ``dest``."""
        os.replace(self.tmp, dest)

    def discard(self):
        """Stop tar if it still runs and remove the temporary archive (no-op after commit)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._thread.join()
        self._proc.stdout.close()
        self._proc.stderr.close()
        self._out.close()
        remove(self.tmp)


def remove_stale_temporaries(folder_out):
    """Remove the temporary archives in ``folder_out`` whose packer process is gone (a builder
    killed mid-pack); return their names. Never named as archives, they were never served."""
    gone = []
    try:
        names = os.listdir(folder_out)
    except FileNotFoundError:
        return gone
    for name in names:
        parts = name.split("-")
        if not (name.startswith(".pack-") and name.endswith(".tmp") and len(parts) == 3 and parts[1].isdigit()):
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue   # its packer still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        remove(os.path.join(folder_out, name))
        gone.append(name)
    return gone


def remove(path):
    """Remove the file at ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
