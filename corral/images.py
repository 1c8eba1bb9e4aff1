"""Where an image lives on disk, the same on the builder and on every node.

An image ``sha256:<hex>`` is the folder ``<images dir>/<hex>/`` holding
``venv/`` (the virtualenv) and ``app/`` (the app's code, the instances'
working directory). The path is identical everywhere, so the virtualenv needs
no relocation. ``IMAGE_MARKER`` is written last, atomically: a folder without
it is unfinished and may be removed.
"""
import json
import os

IMAGE_MARKER = ".corral-image.json"


def image_hex(image_id):
    """The hex digest of ``sha256:<hex>``; ValueError for anything else."""
    prefix, _, digest = image_id.partition(":")
    if prefix != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"image id {image_id!r} is not of the form sha256:<64 hex digits>")
    return digest


def image_dir(images_dir, image_id):
    """The folder of an image."""
    return os.path.join(images_dir, image_hex(image_id))


def venv_dir(images_dir, image_id):
    """The image's virtualenv; its ``bin`` goes first on an instance's PATH."""
    return os.path.join(image_dir(images_dir, image_id), "venv")


def code_dir(images_dir, image_id):
    """The image's copy of the app's code: the instances' working directory."""
    return os.path.join(image_dir(images_dir, image_id), "app")


def read_marker(images_dir, image_id):
    """The finished image's marker (a dict), or None when the image is absent or unfinished."""
    try:
        with open(os.path.join(image_dir(images_dir, image_id), IMAGE_MARKER), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_marker(images_dir, image_id, facts):
    """Mark an image finished (atomic: write a temp file, fsync, rename)."""
    path = os.path.join(image_dir(images_dir, image_id), IMAGE_MARKER)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(facts, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
