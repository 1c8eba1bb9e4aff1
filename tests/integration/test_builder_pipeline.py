"""Builds end to end: a real SQLite store, real venvs, real pip, from the operator's index.

Each test works one job with the build worker, as the daemon does, and checks
what the store, the images folder and the cache folder hold afterwards.
"""
import hashlib
import os
import subprocess

import pytest

from builder.artifacts import artifact_path
from builder.imageid import ImageInputs, image_id
from builder.interpreters import own_interpreter
from builder.pipeline import Workshop, log_path
from builder.worker import Worker
from corral import images
from corral.source import pack_source
from corral.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/corral.db")
    yield s
    s.close()


@pytest.fixture
def workshop(tmp_path):
    return Workshop(name="b1", images_dir=str(tmp_path / "images"), cache_dir=str(tmp_path / "cache"),
                    pip_timeout=300)


@pytest.fixture
def worker(store, workshop):
    return Worker(store, workshop, artifact_base="http://127.0.0.1:7072", stale_after=60)


@pytest.fixture
def digest(tmp_path, store):
    """A tiny app's source, packed and stored; its digest."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("import six\nprint(six.__name__)\n")
    (src / "requirements.txt").write_text("six\n")
    digest, data = pack_source(str(src))
    store.put_source(digest, data)
    return digest


def build(store, worker, key, digest, requirements, python=None):
    """Queue a build, let the worker take it, return the build's row."""
    store.enqueue_build(key, "hello", {"source_digest": digest, "requirements": requirements, "python": python})
    job = worker.work_next()
    assert job is not None and job.key == key
    return store.get_build(key)


def image_folders(workshop):
    return sorted(os.listdir(workshop.images_dir))


def test_build_installs_the_requirements_into_a_venv_beside_the_code(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, ["six"])

    assert (rec.state, rec.cache, rec.error) == ("succeeded", "miss", None)
    hex_digest = images.image_hex(rec.image)
    assert set(rec.phases) == {"fetch", "install", "pack"}
    venv_python = os.path.join(images.venv_dir(workshop.images_dir, rec.image), "bin", "python")
    ran = subprocess.run([venv_python, "-c", "import six, sys; print(six.__file__.startswith(sys.prefix))"],
                         capture_output=True, text=True, cwd=images.code_dir(workshop.images_dir, rec.image))
    assert (ran.returncode, ran.stdout.strip()) == (0, "True"), ran.stderr
    assert os.path.isfile(os.path.join(images.code_dir(workshop.images_dir, rec.image), "app.py"))
    archive = artifact_path(workshop.cache_dir, hex_digest)
    assert rec.artifact_sha256 == hashlib.sha256(open(archive, "rb").read()).hexdigest()
    assert rec.artifact_url == f"http://127.0.0.1:7072/images/{hex_digest}.tar.gz"
    assert images.read_marker(workshop.images_dir, rec.image) == {
        "image": rec.image, "artifact_sha256": rec.artifact_sha256, "built_by": "b1"}
    assert image_folders(workshop) == [hex_digest]
    assert [e.reason for e in store.list_events("app", "hello")][-1] == "Built"


def test_image_id_is_computed_from_the_inputs_and_the_interpreter(store, worker, digest):
    rec = build(store, worker, "k1", digest, ["six"])
    py = own_interpreter()
    assert rec.image == image_id(ImageInputs(python=py.version, platform=py.platform,
                                             requirements="six\n", source_digest=digest))


def test_same_inputs_again_are_a_cache_hit_without_reinstalling(store, worker, workshop, digest):
    first = build(store, worker, "k1", digest, ["six"])
    venv = images.venv_dir(workshop.images_dir, first.image)
    before = os.stat(venv).st_mtime_ns

    second = build(store, worker, "k2", digest, ["six"])

    assert (second.state, second.cache) == ("succeeded", "hit")
    assert (second.image, second.artifact_sha256) == (first.image, first.artifact_sha256)
    assert "install" not in second.phases
    assert not os.path.exists(log_path(workshop, second.id))  # no venv, no pip: nothing was logged
    assert os.stat(venv).st_mtime_ns == before


def test_requirements_file_and_the_same_list_make_the_same_image(store, worker, digest):
    from_list = build(store, worker, "k1", digest, ["six"])
    from_file = build(store, worker, "k2", digest, "requirements.txt")
    assert (from_file.state, from_file.cache, from_file.image) == ("succeeded", "hit", from_list.image)


def test_no_requirements_make_an_empty_venv(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, None)
    assert rec.state == "succeeded", rec.error
    venv_python = os.path.join(images.venv_dir(workshop.images_dir, rec.image), "bin", "python")
    ran = subprocess.run([venv_python, "-c", "import six"], capture_output=True, text=True)
    assert ran.returncode != 0 and "No module named 'six'" in ran.stderr


def test_an_unfinished_leftover_is_replaced(store, worker, workshop, digest):
    first = build(store, worker, "k1", digest, ["six"])
    folder = images.image_dir(workshop.images_dir, first.image)
    os.unlink(os.path.join(folder, images.IMAGE_MARKER))  # as if the builder died before the marker
    open(os.path.join(folder, "leftover"), "w").close()

    again = build(store, worker, "k2", digest, ["six"])

    assert (again.state, again.cache, again.image) == ("succeeded", "miss", first.image)
    assert not os.path.exists(os.path.join(folder, "leftover"))
    assert images.read_marker(workshop.images_dir, first.image)["artifact_sha256"] == again.artifact_sha256


def test_pip_failure_gives_pips_reason_and_leaves_no_image(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, ["nonexistent-pkg-corral-zz"])

    assert rec.state == "failed"
    assert rec.error == ("pip could not install the requirements: Could not find a version that satisfies"
                         " the requirement nonexistent-pkg-corral-zz (from versions: none)")
    assert rec.image is not None
    assert image_folders(workshop) == []
    assert not os.path.exists(artifact_path(workshop.cache_dir, images.image_hex(rec.image)))
    events = store.list_events("app", "hello")
    assert (events[-1].reason, events[-1].message) == ("BuildFailed", rec.error)


def test_missing_requirements_file_is_named(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, "requirements-prod.txt")
    assert (rec.state, rec.error) == ("failed", "requirements file 'requirements-prod.txt' not found in the source")
    assert image_folders(workshop) == []


def test_requirements_file_outside_the_source_is_refused(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, "../corral.db")
    assert (rec.state, rec.error) == ("failed", "requirements file '../corral.db' points outside the source")
    assert image_folders(workshop) == []


def test_unavailable_python_names_version_and_builder(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, ["six"], python="3.2")
    assert (rec.state, rec.error) == ("failed", "python 3.2 is not available on builder b1")
    assert image_folders(workshop) == []


def test_source_missing_from_the_store(store, worker, workshop):
    missing = "sha256:" + "0" * 64
    rec = build(store, worker, "k1", missing, None)
    assert (rec.state, rec.error) == ("failed", f"source {missing} is not in the store")


def test_empty_queue_gives_no_job(worker):
    assert worker.work_next() is None
