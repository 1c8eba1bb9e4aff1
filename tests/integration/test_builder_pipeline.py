"""Builds end to end: a real SQLite store, real venvs, real uv and pip, from the operator's index.

Each test works one job with the build worker, as the daemon does, and checks
what the store, the images folder and the cache folder hold afterwards.
"""
import hashlib
import os
import subprocess

import pytest

from builder.archives import archive_path
from builder.imageid import code_id, env_id_of_lock, image_id
from builder.interpreters import find_interpreter
from builder.pinning import parse_requirements_lock, pin_set
from builder.pipconfig import read_pip_config
from builder.pipeline import GIB, Workshop, build_image, log_path
from builder.worker import Worker
from corral import image_layout
from corral.source import pack_source
from corral.store import open_store

INDEX = read_pip_config()


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/corral.db")
    yield s
    s.close()


def make_workshop(tmp_path, engine="uv", **kw):
    return Workshop(name="b1", images_dir=str(tmp_path / "images"), cache_dir=str(tmp_path / f"cache-{engine}"),
                    pip_timeout=300, engine=engine, index=INDEX, **kw)


@pytest.fixture
def workshop(tmp_path):
    return make_workshop(tmp_path)


@pytest.fixture
def worker(store, workshop):
    return Worker(store, workshop, layers_base="http://127.0.0.1:7072", stale_after=60)


def put_source(tmp_path, store, text="import six\nprint(six.__name__)\n", name="src"):
    """A tiny app's source, packed and stored; its digest."""
    src = tmp_path / name
    src.mkdir(exist_ok=True)
    (src / "app.py").write_text(text)
    (src / "requirements.txt").write_text("six==1.16.0\n")
    digest, data = pack_source(str(src))
    store.put_source(digest, data)
    return digest


@pytest.fixture
def digest(tmp_path, store):
    return put_source(tmp_path, store)


def build(store, worker, key, digest, requirements, python=None):
    """Queue a build, let the worker take it, return the build's row."""
    store.enqueue_build(key, "hello", {"source_digest": digest, "requirements": requirements, "python": python})
    job = worker.work_next()
    assert job is not None and job.key == key
    worker.wait_packed()   # the build is recorded first; its archives are packed after
    return store.get_build(key)


def run_in_image(workshop, image, code):
    venv_python = os.path.join(image_layout.venv_dir(workshop.images_dir, image), "bin", "python")
    return subprocess.run([venv_python, "-c", code], capture_output=True, text=True,
                          cwd=image_layout.code_dir(workshop.images_dir, image))


def layer_folders(workshop, kind):
    folder = os.path.join(workshop.images_dir, kind)
    return sorted(n for n in os.listdir(folder) if not n.endswith(".lock")) if os.path.isdir(folder) else []


@pytest.mark.parametrize("engine", ["uv", "pip"])
def test_a_build_makes_an_env_layer_and_a_code_layer_with_bytecode(store, tmp_path, digest, engine):
    workshop = make_workshop(tmp_path, engine)
    worker = Worker(store, workshop, layers_base="http://127.0.0.1:7072", stale_after=60)
    rec = build(store, worker, "k1", digest, ["six==1.16.0"])

    assert (rec.state, rec.cache, rec.error) == ("succeeded", "miss", None)
    assert {"fetch", "resolve", "code", "install"} <= set(rec.phases)
    ran = run_in_image(workshop, rec.image, "import six, sys; print(six.__version__, six.__file__.startswith(sys.prefix))")
    assert (ran.returncode, ran.stdout.strip()) == (0, "1.16.0 True"), ran.stderr
    pins = parse_requirements_lock(rec.lock)
    assert [(p.name, p.version) for p in pins] == [("six", "1.16.0")] and pins[0].hashes
    env, code = rec.layers
    assert (env["kind"], code["kind"]) == ("env", "code")
    py = find_interpreter(None, "b1")   # the builder's own, or a shared one where its own is private
    assert env["id"] == env_id_of_lock(py, pins, digest)
    assert code["id"] == code_id(py.version, digest)
    assert rec.image == image_id(env["id"], code["id"])
    for layer in rec.layers:
        hexid = image_layout.image_hex(layer["id"])
        archive = archive_path(workshop.cache_dir, layer["kind"], hexid)
        assert layer["sha256"] == hashlib.sha256(open(archive, "rb").read()).hexdigest()
        assert layer["size"] == os.path.getsize(archive)
        assert layer["url"] == f"http://127.0.0.1:7072/layers/{layer['kind']}/{hexid}.tar"
    code_dir = image_layout.layer_dir(workshop.images_dir, "code", code["id"])
    assert any(n.startswith("app.") and n.endswith(".pyc") for n in os.listdir(os.path.join(code_dir, "__pycache__")))
    site = os.path.join(image_layout.layer_dir(workshop.images_dir, "env", env["id"]), "lib",
                        f"python{py.major_minor}", "site-packages")
    assert any(n.startswith("six.") for n in os.listdir(os.path.join(site, "__pycache__"))), "six is compiled"
    assert [e.reason for e in store.list_events("app", "hello")][-1] == "Built"


def test_uv_and_pip_resolve_the_same_set(store, tmp_path, digest):
    """The same pins; not the same environment layer, which names the files each lock allows
    (uv lists every file of a release, pip the one it chose)."""
    made = []
    for engine in ("uv", "pip"):
        workshop = make_workshop(tmp_path / engine, engine)
        rec = build(store, Worker(store, workshop, layers_base="http://b", stale_after=60), f"k-{engine}",
                    digest, ["six==1.16.0"])
        assert rec.state == "succeeded", rec.error
        made.append(pin_set(parse_requirements_lock(rec.lock)))
    assert made[0] == made[1] == ["six==1.16.0"]


def test_same_inputs_again_are_a_cache_hit_without_any_work(store, worker, workshop, digest):
    first = build(store, worker, "k1", digest, ["six==1.16.0"])
    env_dir = image_layout.layer_dir(workshop.images_dir, "env", first.layers[0]["id"])
    before = os.stat(env_dir).st_mtime_ns

    second = build(store, worker, "k2", digest, "requirements.txt")  # the same text, from the file

    assert (second.state, second.cache, second.image, second.layers) == ("succeeded", "hit", first.image, first.layers)
    assert "install" not in second.phases
    assert not os.path.exists(log_path(workshop, second.id))  # no resolve, no install: nothing was logged
    assert os.stat(env_dir).st_mtime_ns == before


def test_a_change_of_code_alone_reuses_the_environment(store, worker, workshop, tmp_path, digest):
    first = build(store, worker, "k1", digest, ["six==1.16.0"])
    changed = put_source(tmp_path, store, text="import six\nprint('v2')\n", name="src2")

    second = build(store, worker, "k2", changed, ["six==1.16.0"])

    assert (second.state, second.cache) == ("succeeded", "env-hit")
    assert second.layers[0] == first.layers[0]
    assert second.layers[1]["id"] != first.layers[1]["id"] and second.image != first.image
    assert "install" not in second.phases and "resolve" in second.phases
    assert layer_folders(workshop, "env") == [first.layers[0]["id"][7:], first.layers[0]["id"][7:] + ".json"]
    assert run_in_image(workshop, second.image, "import app").stdout == "v2\n"


def test_a_new_set_is_derived_from_the_nearest_environment_and_leaves_it_alone(store, worker, workshop, digest):
    first = build(store, worker, "k1", digest, ["six==1.16.0", "idna==3.6", "certifi==2024.8.30"])
    base = image_layout.layer_dir(workshop.images_dir, "env", first.layers[0]["id"])
    listing = sorted(os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs)

    second = build(store, worker, "k2", digest, ["six==1.16.0", "idna==3.7", "certifi==2024.8.30", "urllib3==2.2.3"])

    assert (second.state, second.cache) == ("succeeded", "miss"), second.error
    marker = image_layout.read_layer_marker(workshop.images_dir, "env", second.layers[0]["id"])
    assert marker["derived_from"] == first.layers[0]["id"]
    ran = run_in_image(workshop, second.image, "import idna, six, certifi, urllib3; print(idna.__version__)")
    assert (ran.returncode, ran.stdout.strip()) == (0, "3.7"), ran.stderr
    assert run_in_image(workshop, first.image, "import idna; print(idna.__version__)").stdout.strip() == "3.6"
    assert sorted(os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs) == listing
    new_env = image_layout.layer_dir(workshop.images_dir, "env", second.layers[0]["id"])
    with open(os.path.join(new_env, "bin", "activate"), encoding="utf-8") as f:
        activate = f.read()
    assert base not in activate, "nothing in the new environment names its base"


def test_an_unknown_requirement_fails_with_uvs_reason_and_leaves_no_layer(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, ["nonexistent-pkg-corral-zz"])

    assert rec.state == "failed"
    assert rec.error.startswith("uv could not install the requirements: Because nonexistent-pkg-corral-zz was"
                                " not found in the package registry")
    assert "nonexistent-pkg-corral-zz" in rec.log_tail
    assert layer_folders(workshop, "env") == []
    assert [n for n in os.listdir(workshop.images_dir) if n not in ("env", "code")] == []
    events = store.list_events("app", "hello")
    assert (events[-1].reason, events[-1].message) == ("BuildFailed", rec.error)


def test_the_pip_engine_fails_with_pips_reason(store, tmp_path, digest):
    workshop = make_workshop(tmp_path, "pip")
    rec = build(store, Worker(store, workshop, layers_base="http://b", stale_after=60), "k1", digest,
                ["nonexistent-pkg-corral-zz"])
    assert (rec.state, rec.error) == ("failed", "pip could not resolve the requirements: Could not find a version"
                                                " that satisfies the requirement nonexistent-pkg-corral-zz"
                                                " (from versions: none)")


def test_an_unfinished_env_layer_is_replaced(store, worker, workshop, digest):
    first = build(store, worker, "k1", digest, ["six==1.16.0"])
    env = first.layers[0]["id"]
    os.unlink(image_layout.layer_marker_path(workshop.images_dir, "env", env))  # as if the builder died before it
    open(os.path.join(image_layout.layer_dir(workshop.images_dir, "env", env), "leftover"), "w").close()

    again = build(store, worker, "k2", digest, ["six==1.16.0"])

    assert (again.state, again.cache, again.layers[0]["id"]) == ("succeeded", "miss", env)
    assert not os.path.exists(os.path.join(image_layout.layer_dir(workshop.images_dir, "env", env), "leftover"))
    assert image_layout.read_layer_marker(workshop.images_dir, "env", env)["artifact_sha256"] == again.layers[0]["sha256"]


def test_no_requirements_make_an_empty_venv(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, None)
    assert (rec.state, rec.lock) == ("succeeded", ""), rec.error
    ran = run_in_image(workshop, rec.image, "import six")
    assert ran.returncode != 0 and "No module named 'six'" in ran.stderr


def test_too_little_free_disk_refuses_the_build(store, tmp_path, digest):
    workshop = make_workshop(tmp_path, min_free=1 << 60)
    rec = build(store, Worker(store, workshop, layers_base="http://b", stale_after=60), "k1", digest, None)
    assert rec.state == "failed"
    assert rec.error.startswith("builder b1 has ") and rec.error.endswith(f"less than the {(1 << 60) / GIB:.1f} GiB a build needs")


def test_missing_requirements_file_is_named(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, "requirements-prod.txt")
    assert (rec.state, rec.error) == ("failed", "requirements file 'requirements-prod.txt' not found in the source")
    assert layer_folders(workshop, "code") == []


def test_requirements_file_outside_the_source_is_refused(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, "../corral.db")
    assert (rec.state, rec.error) == ("failed", "requirements file '../corral.db' points outside the source")


def test_unavailable_python_names_version_and_builder(store, worker, workshop, digest):
    rec = build(store, worker, "k1", digest, ["six"], python="3.2")
    assert (rec.state, rec.error) == ("failed", "python 3.2 is not available on builder b1")
    assert layer_folders(workshop, "code") == []


def test_source_missing_from_the_store(store, worker, workshop):
    missing = "sha256:" + "0" * 64
    rec = build(store, worker, "k1", missing, None)
    assert (rec.state, rec.error) == ("failed", f"source {missing} is not in the store")


def test_empty_queue_gives_no_job(worker):
    assert worker.work_next() is None


def test_a_cold_uv_build_reports_its_phases_from_uvs_own_output(store, tmp_path, digest):
    workshop = make_workshop(tmp_path)
    seen = []
    build_image(1, {"source_digest": digest, "requirements": ["six==1.16.0", "idna==3.6"]}, store=store,
                workshop=workshop, progress=seen.append)
    assert seen == ["fetch", "resolve", "fetch (2 packages resolved)", "install (fetched 2/2)",
                    "compile bytecode (2 installed)", "lock"], seen


def test_a_build_is_recorded_before_its_archives_and_a_restarted_builder_packs_them(store, worker, workshop,
                                                                                     digest):
    store.enqueue_build("k1", "hello", {"source_digest": digest, "requirements": ["six==1.16.0"], "python": None})
    worker.work_next()   # its packing green thread never runs here: as if the builder died right after
    try:
        rec = store.get_build("k1")
        assert (rec.state, rec.layers) == ("succeeded", None), "no node is sent an image without its sha256"
        assert os.path.isdir(image_layout.venv_dir(workshop.images_dir, rec.image)), "a node sharing the folder can run it"

        again = Worker(store, workshop, layers_base="http://127.0.0.1:7072", stale_after=60)
        assert again.recover() == [rec.id]
    finally:
        for packing, _ in list(worker.packing.values()):
            packing.kill()

    rec = store.get_build("k1")
    assert [layer["kind"] for layer in rec.layers] == ["env", "code"]
    for layer in rec.layers:
        archive = archive_path(workshop.cache_dir, layer["kind"], layer["id"][7:])
        assert layer["url"] == f"http://127.0.0.1:7072/layers/{layer['kind']}/{layer['id'][7:]}.tar"
        assert (layer["sha256"], layer["size"]) == (hashlib.sha256(open(archive, "rb").read()).hexdigest(),
                                                    os.path.getsize(archive))
    assert again.recover() == [], "recorded once"
