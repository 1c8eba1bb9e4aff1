"""Where images and their layers live on disk, the same on the builder and on every node.

An image is two layers, each a folder named by its own id::

    <images dir>/env/<env hex>/          the virtualenv (keyed by python, platform, resolved lock)
    <images dir>/env/<env hex>.json      its marker, written last
    <images dir>/code/<code hex>/        the app's code with its bytecode (keyed by source digest)
    <images dir>/code/<code hex>.json    its marker, written last
    <images dir>/<image hex>/            the image: ``venv -> ../env/<env hex>``,
                                         ``app -> ../code/<code hex>``, and IMAGE_MARKER

The paths are identical everywhere, so a virtualenv needs no relocation: its
scripts name ``<images dir>/env/<env hex>/bin/python``. A change of code alone
makes a new code layer and a new image folder, and reuses the environment
layer as it is. A marker is written last, atomically: a layer or image folder
without one is unfinished, is never used or served, and may be removed.
Markers sit beside a layer, not inside it, so the app's working directory
holds the app alone.
"""
import json
import os

from corral import private

MARKER_MODE = 0o644

IMAGE_MARKER = ".corral-image.json"
LAYER_KINDS = ("env", "code")


def image_hex(image_id):
    """The hex digest of ``sha256:<hex>``; ValueError for anything else."""
    prefix, _, digest = str(image_id).partition(":")
    if prefix != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"id {image_id!r} is not of the form sha256:<64 hex digits>")
    return digest


def image_dir(images_dir, image_id):
    """The folder of an image (its two links and its marker)."""
    return os.path.join(images_dir, image_hex(image_id))


def venv_dir(images_dir, image_id):
    """The image's virtualenv (a link to its env layer); its ``bin`` goes first on an instance's PATH."""
    return os.path.join(image_dir(images_dir, image_id), "venv")


def code_dir(images_dir, image_id):
    """The image's app code (a link to its code layer): the instances' working directory."""
    return os.path.join(image_dir(images_dir, image_id), "app")


def layer_dir(images_dir, kind, layer_id):
    """The folder of layer ``layer_id`` of ``kind`` ("env" or "code"); ValueError for another kind."""
    if kind not in LAYER_KINDS:
        raise ValueError(f"layer kind {kind!r} is not one of {', '.join(LAYER_KINDS)}")
    return os.path.join(images_dir, kind, image_hex(layer_id))


def layer_marker_path(images_dir, kind, layer_id):
    """The marker file of a layer, beside its folder."""
    return layer_dir(images_dir, kind, layer_id) + ".json"


def read_layer_marker(images_dir, kind, layer_id):
    """The finished layer's marker (a dict), or None when the layer is absent or unfinished."""
    return _read_json(layer_marker_path(images_dir, kind, layer_id))


def write_layer_marker(images_dir, kind, layer_id, facts):
    """Mark a layer finished (atomic)."""
    _write_json(layer_marker_path(images_dir, kind, layer_id), facts)


def link_image(images_dir, image_id, env_id, code_id, facts, tmp_suffix):
    """Make the image folder linking its two finished layers, then its marker; return the folder.

    The links are made in ``<image hex>.<tmp_suffix>`` and renamed into place;
    an image folder already there (another writer won) is kept. The marker
    is (re)written last with ``facts``.
    """
    final = image_dir(images_dir, image_id)
    if not os.path.isdir(final):
        tmp = f"{final}.{tmp_suffix}"
        os.makedirs(tmp)
        os.symlink(os.path.join("..", "env", image_hex(env_id)), os.path.join(tmp, "venv"))
        os.symlink(os.path.join("..", "code", image_hex(code_id)), os.path.join(tmp, "app"))
        try:
            os.rename(tmp, final)
        except OSError:
            for name in ("venv", "app"):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)
            if not os.path.isdir(final):
                raise
    write_marker(images_dir, image_id, facts)
    return final


def read_marker(images_dir, image_id):
    """The finished image's marker (a dict), or None when the image is absent or unfinished."""
    return _read_json(os.path.join(image_dir(images_dir, image_id), IMAGE_MARKER))


def write_marker(images_dir, image_id, facts):
    """Mark an image finished (atomic: write a temp file, fsync, rename)."""
    _write_json(os.path.join(image_dir(images_dir, image_id), IMAGE_MARKER), facts)


def working_dirs(proc_root="/proc"):
    """The real working folders of this machine's processes (an image's code in use by anyone)."""
    out = set()
    for pid in os.listdir(proc_root):
        if pid.isdigit():
            try:
                out.add(os.readlink(f"{proc_root}/{pid}/cwd"))
            except OSError:
                pass
    return out


def touch_layer(images_dir, kind, layer_id):
    """Record that a finished layer was used now (its marker's mtime: least-recently-used pruning)."""
    try:
        os.utime(layer_marker_path(images_dir, kind, layer_id))
    except OSError:
        pass


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, facts):
    """Replace the marker ``path`` atomically (a full disk leaves no half-written marker behind);
    markers hold ids and digests, no secret, so others may read them."""
    private.write_private(path, json.dumps(facts, sort_keys=True), mode=MARKER_MODE)
