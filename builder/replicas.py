"""Copies of the layers other builders made, so that one builder down does not stop a deploy.

Every ``REPLICATE_EVERY`` seconds a builder looks at the images the desired
table names (what nodes run or are about to fetch) and, for each of their
layers that it neither has finished in its images folder (built here, or by a
builder sharing the folder) nor has copied yet, downloads the archive from the
builders offered for it (the one that built it first), with a URL it signs
for itself with the layer key, and checks it as an agent does
(:func:`corral.layer_download.download`: the size and sha256 the build
recorded). A copy is ``<cache dir>/replicas/<kind>-<hex>.tar`` (written under
a temporary name, renamed when whole) beside ``<kind>-<hex>.json`` (its
sha256 and size, written last: a copy without it is not one); ``web.py``
serves it when the layer is not finished here. Copies of layers no desired
image names any longer, or that this builder now has finished, are removed:
the copies hold the working set, no more.
"""
import json
import logging
import os
import secrets
import time

import eventlet

from builder import archives
from corral import image_layout, layer_access
from corral.layer_download import DownloadFailed, download
from corral.store import StoreError

log = logging.getLogger("corral.builder")

REPLICATE_EVERY = 15.0   # seconds between two looks at what to copy (the setting layer_copy_interval)
COPY_TTL = 600           # seconds a URL a builder signs for itself is good (the copy starts at once)


def plan(wanted, finished, copies):
    """``(to copy, to drop)``: the layer dicts of ``wanted`` (layers of desired images, as builds
    recorded them) neither ``finished`` here nor among ``copies`` (``(kind, hex)``), once each; and the
    copies no wanted layer names or that are finished here. A purely computational function."""
    keys = {}
    for layer in wanted:
        keys.setdefault((layer["kind"], layer["id"][len("sha256:"):]), layer)
    copy = [layer for key, layer in sorted(keys.items())
            if (layer["kind"], layer["id"]) not in finished and key not in copies]
    drop = sorted(key for key in copies if key not in keys or (key[0], "sha256:" + key[1]) in finished)
    return copy, drop


def copies_dir(cache_dir):
    return os.path.join(cache_dir, "replicas")


def copy_of(cache_dir, kind, hex_digest):
    """``(path, sha256)`` of this builder's whole copy of the layer, or None."""
    base = os.path.join(copies_dir(cache_dir), f"{kind}-{hex_digest}")
    try:
        with open(base + ".json", encoding="utf-8") as f:
            facts = json.load(f)
    except (OSError, ValueError):
        return None
    return (base + ".tar", facts.get("sha256")) if os.path.exists(base + ".tar") else None


def held(cache_dir):
    """The ``(kind, hex)`` of every whole copy here."""
    try:
        names = os.listdir(copies_dir(cache_dir))
    except FileNotFoundError:
        return set()
    return {tuple(name[:-len(".json")].split("-", 1)) for name in names
            if name.endswith(".json") and not name.startswith(".")}


class Replicas:
    """Keeps this builder's copies of the layers other builders made (see the module's docstring)."""

    def __init__(self, store, keys, *, name, images_dir, cache_dir, own_url, silent_after=60.0):
        self.store = store
        self.keys = keys
        self.name = name
        self.images_dir = images_dir
        self.cache_dir = cache_dir
        self.own_url = own_url
        self.silent_after = silent_after

    def run(self, stopping, every=REPLICATE_EVERY):
        """Copy and drop every ``every`` s until ``stopping()``; first remove what a builder killed
        mid-copy left (temporary names, never served)."""
        try:
            for name in os.listdir(copies_dir(self.cache_dir)):
                if name.startswith(".copy-") or name.endswith(".json.tmp"):
                    archives.remove(os.path.join(copies_dir(self.cache_dir), name))
        except FileNotFoundError:
            pass
        while not stopping():
            try:
                self.once(stopping)
            except StoreError as exc:
                log.warning("builder %s could not look for layers to copy: %s", self.name, exc)
            eventlet.sleep(every)

    def once(self, stopping=lambda: False):
        """One look: copy what is missing, drop what is not wanted; returns ``(copied, dropped)`` keys."""
        images = {r.image for r in self.store.list_desired()}
        wanted = [layer for b in self.store.list_build_states() if b.state == "succeeded" and b.image in images
                  for layer in (b.layers or ()) if layer.get("sha256") and layer.get("url")]
        finished = {(layer["kind"], layer["id"]) for layer in wanted
                    if image_layout.read_layer_marker(self.images_dir, layer["kind"], layer["id"]) is not None}
        copy, drop = plan(wanted, finished, held(self.cache_dir))
        for kind, hex_digest in drop:
            base = os.path.join(copies_dir(self.cache_dir), f"{kind}-{hex_digest}")
            archives.remove(base + ".json")   # first: a copy without its facts is no copy
            archives.remove(base + ".tar")
        copied = []
        builders = [(b.name, b.url, b.age) for b in self.store.list_builders() if b.url != self.own_url]
        for layer in copy:
            if stopping():
                break
            if self._copy(layer, builders):
                copied.append((layer["kind"], layer["id"][len("sha256:"):]))
        return copied, drop

    def _copy(self, layer, builders):
        """Download ``layer`` from the builders that may have it into a copy here; True when made."""
        kind, hex_digest = layer["kind"], layer["id"][len("sha256:"):]
        folder = copies_dir(self.cache_dir)
        os.makedirs(folder, exist_ok=True)
        key, exp = self.keys.signing(), int(time.time()) + COPY_TTL
        bases = layer_access.layer_bases(layer_access.base_of(layer["url"]), builders, self.silent_after)
        tmp = os.path.join(folder, f".copy-{secrets.token_hex(8)}.tar")
        failures = []
        for base in (b for b in bases if b != self.own_url):
            url = layer_access.signed_url(base, kind, hex_digest, f"builder-{self.name}", exp, key)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                size = download(url, fd, layer["sha256"], layer.get("size"))
            except DownloadFailed as e:
                failures.append(str(e))
                continue
            finally:
                os.close(fd)
            final = os.path.join(folder, f"{kind}-{hex_digest}")
            os.rename(tmp, final + ".tar")
            with open(final + ".json.tmp", "w", encoding="utf-8") as f:
                json.dump({"sha256": layer["sha256"], "size": size, "from": layer_access.base_of(url)}, f)
            os.rename(final + ".json.tmp", final + ".json")
            return True
        archives.remove(tmp)
        if failures:
            log.warning("builder %s could not copy %s layer %s: %s", self.name, kind, layer["id"],
                        "; then ".join(failures))
        return False
