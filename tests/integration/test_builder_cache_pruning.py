"""Pruning the builder's caches to their sizes: real builds (real uv, real store), then what is left on disk."""
import dataclasses
import os
import subprocess
import time

from builder.archives import archive_path
from builder.engines import find_uv
from builder.layers import LayerLock
from builder.prune import _uv_package_sizes, prune_layers, prune_wheels
from builder.worker import Worker
from corral import image_layout
from tests.integration.test_builder_pipeline import build, make_workshop, put_source, store  # noqa: F401

SIX, IDNA = ["six==1.16.0"], ["idna==3.6"]


def worker_of(store, workshop):
    return Worker(store, workshop, layers_base="http://127.0.0.1:7072", stale_after=60)


def gone(workshop, kind, layer_id):
    return (image_layout.read_layer_marker(workshop.images_dir, kind, layer_id) is None
            and not os.path.exists(image_layout.layer_dir(workshop.images_dir, kind, layer_id))
            and not os.path.exists(archive_path(workshop.cache_dir, kind, layer_id[7:])))


def test_over_its_size_the_least_recently_used_layer_goes_with_its_image_and_the_new_build_stays(store, tmp_path):
    workshop = make_workshop(tmp_path, layer_cache_bytes=1)
    digest = put_source(tmp_path, store)
    first = build(store, worker_of(store, workshop), "k1", digest, SIX)
    assert first.state == "succeeded", first.error
    second = build(store, worker_of(store, workshop), "k2", digest, IDNA)
    assert second.state == "succeeded", second.error
    assert gone(workshop, "env", first.layers[0]["id"])
    assert not os.path.exists(image_layout.image_dir(workshop.images_dir, first.image)), "its image went with it"
    for layer in second.layers:
        assert image_layout.read_layer_marker(workshop.images_dir, layer["kind"], layer["id"]) is not None
    assert image_layout.read_marker(workshop.images_dir, second.image) is not None


def test_a_layer_locked_by_a_running_build_or_worked_in_by_a_process_stays(store, tmp_path):
    workshop = make_workshop(tmp_path)
    digest = put_source(tmp_path, store)
    first = build(store, worker_of(store, workshop), "k1", digest, SIX)
    other = put_source(tmp_path, store, "import idna\n", name="src2")   # its own code layer
    second = build(store, worker_of(store, workshop), "k2", other, IDNA)
    small = make_workshop(tmp_path, layer_cache_bytes=1)
    app = image_layout.code_dir(workshop.images_dir, second.image)
    sleeper = subprocess.Popen(["sleep", "60"], cwd=app)
    try:
        with LayerLock(workshop.images_dir, "env", first.layers[0]["id"], lambda: False, shared=True):
            assert prune_layers(small) == [("code", first.layers[1]["id"])], "its env layer is held"
        assert prune_layers(small) == [("env", first.layers[0]["id"])], "the image worked in stays"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert image_layout.read_marker(workshop.images_dir, second.image) is not None
    assert sorted(prune_layers(small)) == sorted((layer["kind"], layer["id"]) for layer in second.layers), \
        "once no process works in it, the image in use goes too"


def test_the_wheel_caches_lose_their_least_recently_used_wheels_and_packages(store, tmp_path):
    workshop = make_workshop(tmp_path)
    digest = put_source(tmp_path, store)
    build(store, worker_of(store, workshop), "k1", digest, SIX)
    time.sleep(0.05)   # six's env layer is used before idna's
    build(store, worker_of(store, workshop), "k2", digest, IDNA)
    uv_dir = os.path.join(workshop.cache_dir, "uv")
    sizes, _ = _uv_package_sizes(uv_dir)
    assert {"six", "idna"} <= set(sizes)
    wheelhouse = os.path.join(workshop.cache_dir, "wheels")
    os.makedirs(wheelhouse)
    for used, name in [(1000, "old-1.0-py3-none-any.whl"), (time.time() + 100, "new-1.0-py3-none-any.whl")]:
        path = os.path.join(wheelhouse, name)
        with open(path, "wb") as f:
            f.write(b"w" * 1000)
        os.utime(path, (used, used))
    total = sum(sizes.values()) + 2000 + _uv_package_sizes(uv_dir)[1]
    limit = total - sizes["six"] - 1000   # the old wheel and six (older than idna) must go
    removed = prune_wheels(make_workshop(tmp_path, wheel_cache_bytes=limit), find_uv())
    assert removed[:2] == [os.path.join(wheelhouse, "old-1.0-py3-none-any.whl"), "six"], removed
    assert "six" not in _uv_package_sizes(uv_dir)[0] and "idna" in _uv_package_sizes(uv_dir)[0]
    assert os.listdir(wheelhouse) == ["new-1.0-py3-none-any.whl"]
    elsewhere = dataclasses.replace(workshop, images_dir=str(tmp_path / "images2"))   # uv must fetch six again
    again = build(store, worker_of(store, elsewhere), "k3", digest, SIX)
    assert (again.state, again.cache) == ("succeeded", "miss"), again.error
    assert "six" in _uv_package_sizes(uv_dir)[0]
