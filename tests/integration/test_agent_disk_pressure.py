"""Disk pressure on a real, small filesystem (a tmpfs mounted by the test, so root only):
an image is refused when it would leave less than the threshold free, unused images go
least recently used first, and a full disk never corrupts the agent's files or an image."""
import corral.green

corral.green.patch()

import os  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from nodeagent import disk  # noqa: E402
from nodeagent.pull import ImageCache, ImageError, ensure_image  # noqa: E402
from nodeagent.state import EpochFence, load_table, save_table, table_text  # noqa: E402
from tests.integration.test_agent_daemon import image_server  # noqa: E402,F401  (fixture)
from tests.support import fill, need_root  # noqa: E402


@pytest.fixture(autouse=True)
def as_root():
    """Every test here mounts a tmpfs: it needs root."""
    need_root("mounting a small tmpfs needs root")

SIZE = 32 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs at a fresh folder; yields its path."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def artifact(image_server, tag):
    """An image's artifact whose layers have ids of their own (``tag``) over the served archives."""
    url, digests, _ = image_server
    sizes = {kind: len(data) for kind, data in _archives().items()}
    return {"layers": [{"kind": kind, "id": "sha256:" + (tag + kind[0]) * 32, "url": f"{url}/{kind}.tar",
                        "sha256": digests[kind], "size": sizes[kind]} for kind in ("env", "code")]}


def _archives():
    from tests.integration.test_agent_daemon import build_image_archive
    return build_image_archive()


def image(tag):
    return "sha256:" + tag * 64


def need_of(art):
    return sum(2 * layer["size"] for layer in art["layers"])


def test_an_image_that_would_leave_less_than_the_threshold_free_is_refused_and_nothing_is_left(small_disk,
                                                                                              image_server):
    images_dir = small_disk / "images"
    images_dir.mkdir()
    art = artifact(image_server, "a")
    fill(small_disk, disk.threshold(SIZE) + need_of(art) // 2)
    cache = ImageCache(str(images_dir))
    with pytest.raises(ImageError, match=r"^image sha256:a+: not enough disk space to unpack it: it needs .* MiB"):
        cache.ensure(image("a"), art)
    assert sorted(os.listdir(images_dir)) == [], "nothing of the refused image is left"


def test_unused_images_are_evicted_least_recently_used_first(small_disk, image_server):
    images_dir = small_disk / "images"
    images_dir.mkdir()
    used = set()
    cache = ImageCache(str(images_dir), in_use=lambda: used)
    for n, tag in enumerate("bcd"):
        folder = cache.ensure(image(tag), artifact(image_server, tag))
        os.utime(os.path.join(folder, ".corral-image.json"), (1000 + n, 1000 + n))  # b oldest, d newest
    used.add(image("b"))   # b runs: kept though it is the oldest
    art = artifact(image_server, "e")
    assert need_of(art) // 2 > 16384
    # short of room by half its need, less a few blocks: evicting one image of the same size is enough
    fill(small_disk, disk.threshold(SIZE) + need_of(art) // 2 + 8192)
    cache.ensure(image("e"), art)
    present = sorted(n for n in os.listdir(images_dir) if len(n) == 64)
    assert present == sorted(image(t)[7:] for t in "bde"), "the least recently used unused image (c) went"
    assert sorted(os.listdir(images_dir / "code")) == sorted(
        x for t in "bde" for x in ((t + "c") * 32, (t + "c") * 32 + ".json"))


def test_a_full_disk_leaves_the_state_files_whole(small_disk):
    fence = EpochFence(str(small_disk))
    assert fence.admit(3)
    save_table(str(small_disk), table_text({"i-1": {"pid": 1}}))
    fill(small_disk)
    with pytest.raises(OSError):
        fence.admit(4)
    with pytest.raises(OSError):
        save_table(str(small_disk), table_text({"i-1": {"pid": 1}, "i-2": {"pid": 2}}))
    assert EpochFence(str(small_disk)).highest == 3 and load_table(str(small_disk)) == {"i-1": {"pid": 1}}
    assert sorted(os.listdir(small_disk)) == ["agent-state.json", "ballast-0", "instances.json"], "no temp file left"


def test_a_full_disk_leaves_no_half_image(small_disk, image_server):
    images_dir = small_disk / "images"
    images_dir.mkdir()
    fill(small_disk)
    with pytest.raises(ImageError):
        ensure_image(str(images_dir), image("f"), artifact(image_server, "f"))
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(images_dir) for f in files]
    assert leftovers == [] and not os.path.exists(images_dir / image("f")[7:])
