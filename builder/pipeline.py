"""One build, from inputs to a finished image and its archive.

::

    fetch    source archive from the store -> unpacked into a staging folder
             requirement text read -> interpreter chosen -> image id
             finished image + archive already here?  -> cache "hit", done
    install  <images>/<hex>/app   <- staging folder (rename)
             <images>/<hex>/venv  <- python -m venv --without-pip
             pip --python <venv>/bin/python install -r <requirements>
    pack     <cache>/artifacts/<hex>.tar.gz, its sha256, then the marker

A failure raises BuildFailed (one sentence) and leaves no image folder
behind. A builder told to stop raises BuildAbandoned, also leaving nothing.

Pip is the builder's own (``<builder python> -m pip --python <venv python>``),
so venvs need no pip of their own. Pip reads the operator's configuration
(``pip.conf``, ``PIP_*``) by itself: the builder passes no index options.

The phases are the seam for the later cached, parallel installs (``resolve``,
a shared wheel cache) and for layered images (``cache="env-hit"``).
"""
import dataclasses
import os
import shutil
import sys
import tarfile
import time
import uuid

from builder import artifacts
from builder.commands import run_logged
from builder.failures import BuildFailed, pip_failure_sentence
from builder.imageid import ImageInputs, image_id, requirement_lines_text
from builder.interpreters import find_interpreter
from corral import images, source


@dataclasses.dataclass(frozen=True)
class Workshop:
    """Where and as whom a builder works."""

    name: str                     # the builder's name, e.g. "b1"
    images_dir: str               # finished images: <images_dir>/<hex>/
    cache_dir: str                # artifacts/, logs/, requirements/
    pip_timeout: float = 1800.0   # seconds a pip install may take
    venv_timeout: float = 300.0   # seconds creating a venv may take


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished image: its id, its archive's hex sha256, ``hit``/``miss``, seconds per phase."""

    image: str
    artifact_sha256: str
    cache: str
    phases: dict


def run_here(fn, *args):
    """Run ``fn(*args)`` in the calling thread (the default ``offload``)."""
    return fn(*args)


def log_path(workshop, build_id):
    """The build log of build ``build_id``."""
    return os.path.join(workshop.cache_dir, "logs", f"build-{build_id}.log")


def requirement_spec(inputs):
    """What the build installs: ("none", None), ("list", [str, ...]) or ("file", "path/in/source").

    Raises BuildFailed for a ``requirements`` value of any other shape.
    """
    value = inputs.get("requirements")
    if value is None:
        return ("none", None)
    if isinstance(value, str):
        return ("file", value)
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return ("list", list(value))
    raise BuildFailed(f"requirements {value!r} is neither a file name nor a list of requirement strings")


def read_requirements_file(app_dir, relpath):
    """The text of the requirements file ``relpath`` inside the unpacked source at ``app_dir``."""
    norm = os.path.normpath(relpath)
    root = os.path.realpath(app_dir)
    path = os.path.realpath(os.path.join(root, norm))
    if os.path.isabs(norm) or os.path.commonpath([root, path]) != root:
        raise BuildFailed(f"requirements file {relpath!r} points outside the source")
    if not os.path.isfile(path):
        raise BuildFailed(f"requirements file {relpath!r} not found in the source")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise BuildFailed(f"requirements file {relpath!r} in the source is not UTF-8 text") from None


def build_image(build_id, inputs, *, store, workshop, stopping=lambda: False, offload=run_here,
                find_python=find_interpreter):
    """Make the image for ``inputs`` (a build job's inputs) unless it exists; return its Outcome.

    ``offload(fn, *args)`` runs a blocking, CPU-bound step (unpack, pack,
    remove) off the event loop; the daemon passes ``eventlet.tpool.execute``.
    Raises BuildFailed or BuildAbandoned.
    """
    phases = {}
    clock = time.monotonic()
    digest = inputs.get("source_digest")
    if not isinstance(digest, str) or not digest:
        raise BuildFailed(f"build {build_id} has no source digest in its inputs")
    kind, requirements = requirement_spec(inputs)
    staging = os.path.join(workshop.images_dir, f".fetch-{uuid.uuid4().hex}")
    image = None
    try:
        os.makedirs(workshop.images_dir, exist_ok=True)
        data = store.get_source(digest)
        if data is None:
            raise BuildFailed(f"source {digest} is not in the store")
        try:
            offload(source.unpack_source, data, staging, digest)
        except (ValueError, OSError, tarfile.TarError) as exc:
            raise BuildFailed(f"source {digest} could not be unpacked: {exc}") from None
        if kind == "file":
            text = read_requirements_file(staging, requirements)
        else:
            text = requirement_lines_text(requirements or [])
        python = find_python(inputs.get("python"), workshop.name)
        image = image_id(ImageInputs(python=python.version, platform=python.platform,
                                     requirements=text, source_digest=digest))
        hex_digest = images.image_hex(image)
        phases["fetch"] = _lap(clock)

        marker = images.read_marker(workshop.images_dir, image)
        archive = artifacts.artifact_path(workshop.cache_dir, hex_digest)
        if marker and marker.get("artifact_sha256") and os.path.isfile(archive):
            return Outcome(image=image, artifact_sha256=marker["artifact_sha256"], cache="hit", phases=phases)

        folder = images.image_dir(workshop.images_dir, image)
        try:
            clock = time.monotonic()
            _install(build_id, folder, staging, python, kind, requirements, text,
                     workshop=workshop, stopping=stopping, offload=offload)
            phases["install"] = _lap(clock)
            clock = time.monotonic()
            sha = offload(artifacts.pack_image, folder, archive)
            images.write_marker(workshop.images_dir, image,
                                {"image": image, "artifact_sha256": sha, "built_by": workshop.name})
            phases["pack"] = _lap(clock)
        except BaseException:
            offload(_remove_tree, folder)
            raise
        return Outcome(image=image, artifact_sha256=sha, cache="miss", phases=phases)
    except BuildFailed as exc:
        raise BuildFailed(str(exc), image=image, phases=phases) from None
    finally:
        offload(_remove_tree, staging)


def _install(build_id, folder, staging, python, kind, requirements, text, *, workshop, stopping, offload):
    """Lay out ``folder`` (app + venv) and install the requirements into its venv."""
    offload(_remove_tree, folder)  # an unfinished leftover, or an image whose archive is gone
    os.makedirs(folder)
    app_dir = os.path.join(folder, "app")
    os.rename(staging, app_dir)
    venv = os.path.join(folder, "venv")
    log = log_path(workshop, build_id)
    done = run_logged([python.executable, "-m", "venv", "--without-pip", venv], log_path=log,
                      timeout=workshop.venv_timeout, stopping=stopping)
    if done.returncode != 0 or done.timed_out:
        raise BuildFailed(f"python -m venv failed with {python.executable} on builder {workshop.name}"
                          f" (exit status {done.returncode}; see {log})")
    if kind == "none" or not text.strip():
        return
    if kind == "file":
        req_file = os.path.join(app_dir, os.path.normpath(requirements))
    else:
        req_file = os.path.join(workshop.cache_dir, "requirements", f"{os.path.basename(folder)}.txt")
        os.makedirs(os.path.dirname(req_file), exist_ok=True)
        with open(req_file, "w", encoding="utf-8") as f:
            f.write(text)
    argv = [sys.executable, "-m", "pip", "--python", os.path.join(venv, "bin", "python"),
            "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
            "-r", req_file]
    # cwd = the app: a requirements file's relative paths ("-e .", "-r base.txt") mean the source.
    done = run_logged(argv, log_path=log, timeout=workshop.pip_timeout, stopping=stopping, cwd=app_dir)
    if done.timed_out:
        raise BuildFailed(f"pip did not finish installing the requirements within {workshop.pip_timeout:g}s"
                          f" (see {log})")
    if done.returncode != 0:
        raise BuildFailed(pip_failure_sentence(done.output, done.returncode, log))


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def _lap(start):
    return round(time.monotonic() - start, 3)
