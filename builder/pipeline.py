"""One build, from a job's inputs to a finished, layered image.

::

    fetch    source archive from the store -> unpacked into a staging folder
             requirement text read -> interpreter chosen
    resolve  requirement text -> lock (exact versions and hashes), once per
             (python, platform, text, index): remembered in <cache>/resolutions/
             (uv, and no environment of this python here yet: resolved while
             installing, in one pass, see builder.layers.build_env_unresolved)
             -> env layer id, code layer id, image id
             both layers and the image here already?  -> cache "hit", done
    code     staging -> code layer (bytecode, archive, marker)          (builder.layers)
    install  lock -> env layer, unless it exists ("env-hit")            (builder.layers)
    image    the image folder linking both layers, and its marker: the build is done
    pack     afterwards (pack_archives), each layer's archive for remote nodes, its sha256
             and size then known

A failure raises BuildFailed (one sentence, the installer's own reason
when it gave one) and leaves no unfinished layer or image folder behind. A
builder told to stop raises BuildAbandoned, also leaving nothing.

The resolution memo means a change of code alone costs no resolve: the same
requirement text keeps its lock (as ``six`` today and ``six`` next month
share an image until the text changes; pin versions to move them).
"""
import contextlib
import dataclasses
import os
import shutil
import tarfile
import time
import uuid

from builder import pinning
from builder.engines import pick_engine
from builder.failures import BuildFailed
from builder.imageid import code_id, env_id_of_lock, image_id, requirement_lines_text, resolution_key
from builder.interpreters import find_interpreter, own_interpreter
from builder.layers import build_code_layer, build_env_layer, build_env_unresolved, ensure_archive, finished_layers
from builder.buildusers import SharedUser
from builder.pipconfig import IndexSettings
from corral import image_layout, private, source

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Workshop:
    """Where, as whom and with what a builder works."""

    name: str                     # the builder's name, e.g. "b1"
    images_dir: str               # layers and images: <images_dir>/{env,code}/<hex>/, <images_dir>/<hex>/
    cache_dir: str                # artifacts/, logs/, resolutions/, uv/, wheels/, work/
    pip_timeout: float = 1800.0   # seconds one installer command may take
    venv_timeout: float = 300.0   # seconds creating a venv may take
    engine: str = "auto"          # "uv", "pip" or "auto" (uv when found)
    index: IndexSettings = IndexSettings()   # the operator's index settings (builder.pipconfig)
    min_free: int = 1 * GIB       # bytes that must be free on the images disk for a build to start
    layer_cache_bytes: int = 0    # layers built here (folders + archives) pruned LRU to this; 0: no limit
    wheel_cache_bytes: int = 0    # uv's cache + the pip wheelhouse pruned LRU to this; 0: no limit
    users: object = None          # who builds run as (builder.buildusers.choose); None: the builder's own user

    def build_users(self):
        """:class:`builder.buildusers.BuildUsers`, or the builder's own user (``SharedUser``) when None."""
        return self.users or SharedUser(self.cache_dir, "builds run as the builder's own user")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished image: its id, its layers, ``hit``/``env-hit``/``miss``, seconds per phase, its lock,
    and whether each layer kind was found already built."""

    image: str
    layers: list     # [{"kind", "id", "sha256", "size"}, ...]: env first, then code
    cache: str
    phases: dict
    lock: str
    engine: str
    layer_hits: dict = dataclasses.field(default_factory=dict)   # {"env": bool, "code": bool}


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


def check_free_space(workshop, disk_usage=shutil.disk_usage):
    """Raise BuildFailed when the images disk has less than ``workshop.min_free`` bytes free."""
    free = disk_usage(workshop.images_dir).free
    if free < workshop.min_free:
        raise BuildFailed(f"builder {workshop.name} has {free / GIB:.1f} GiB free on {workshop.images_dir},"
                          f" less than the {workshop.min_free / GIB:.1f} GiB a build needs")


def build_image(build_id, inputs, *, store, workshop, app="", stopping=lambda: False, offload=run_here,
                find_python=find_interpreter, progress=lambda phase: None):
    """Make the image for ``inputs`` (a build job's inputs, of ``app``) unless it exists; return its Outcome.

    The build's commands run as ``workshop.build_users()`` decides (app ``app``'s build user when
    the builder is root: :mod:`builder.buildusers`). ``offload(fn, *args)`` runs a blocking,
    CPU-bound step (unpack, remove) off the event loop; the daemon passes ``eventlet.tpool.execute``.
    ``progress(phase)`` is told each phase as it starts. Raises BuildFailed or BuildAbandoned.
    """
    token = uuid.uuid4().hex
    with contextlib.ExitStack() as stack:
        try:
            box = stack.enter_context(workshop.build_users().session(app, token))
        except OSError as exc:
            raise BuildFailed(f"builder {workshop.name} could not prepare the build's identity: {exc}") from None
        engine = pick_engine(workshop.engine, box=box, index=workshop.index, timeout=workshop.pip_timeout)
        return _build(build_id, inputs, store, workshop, engine, token, stopping, offload, find_python, progress)


def _build(build_id, inputs, store, workshop, engine, token, stopping, offload, find_python, progress):
    """The steps of :func:`build_image`, its commands run by ``engine`` (and its box)."""
    phases = {}
    clock = time.monotonic()
    digest = inputs.get("source_digest")
    if not isinstance(digest, str) or not digest:
        raise BuildFailed(f"build {build_id} has no source digest in its inputs")
    kind, requirements = requirement_spec(inputs)
    staging = os.path.join(workshop.images_dir, "code", f".fetch-{token}")
    log = log_path(workshop, build_id)
    image = None
    try:
        os.makedirs(os.path.join(workshop.images_dir, "code"), exist_ok=True)
        check_free_space(workshop)
        progress("fetch")
        text, req_file, cwd = _fetch_source(store, digest, kind, requirements, staging, engine.box, offload)
        python = find_python(inputs.get("python"), workshop.name)
        phases["fetch"] = _lap(clock)

        clock = time.monotonic()
        progress("resolve")
        pins, env_done = _resolve(engine, workshop, python, text, req_file, cwd, log, stopping, progress, digest)
        lock_text = pinning.lock_text(pins)
        env = env_id_of_lock(python, pins, digest, engine.box.key)
        code = code_id(python.version, digest)
        image = image_id(env, code)
        phases["resolve"] = _lap(clock)

        clock = time.monotonic()
        code_marker, code_was_there = build_code_layer(
            images_dir=workshop.images_dir, layer_id=code, python=python,
            staging=staging, own_version=own_interpreter().version, log=log, stopping=stopping,
            builder=workshop.name)
        phases["code"] = _lap(clock)

        clock = time.monotonic()
        if env_done is not None:   # resolved and installed in one pass
            env_marker, env_was_there = env_done
            phases["install"], phases["resolve"] = phases["resolve"], 0.0
        else:
            env_marker, env_was_there = build_env_layer(
                engine, images_dir=workshop.images_dir, layer_id=env, python=python,
                pins=pins, lock_text=lock_text, log=log, stopping=stopping, builder=workshop.name,
                progress=progress)
            if not env_was_there:
                phases["install"] = _lap(clock)

        layers = _link_image(workshop, image, {"env": (env, env_marker), "code": (code, code_marker)}, token)
        cache = "hit" if env_was_there and code_was_there else "env-hit" if env_was_there else "miss"
        return Outcome(image=image, layers=layers, cache=cache, phases=phases, lock=lock_text, engine=engine.name,
                       layer_hits={"env": env_was_there, "code": code_was_there})
    except BuildFailed as exc:
        raise BuildFailed(str(exc), image=image, phases=phases) from None
    finally:
        offload(_remove_tree, staging)


def _fetch_source(store, digest, kind, requirements, staging, box, offload):
    """Unpack the source ``digest`` into ``staging`` and have its requirements where the engine reads
    them (the app's own file, or ours in ``box.inputs`` from the spec's lines): ``(text, file, cwd)``,
    ``cwd`` the folder the installer runs in: a copy of the source in the build's own folder when
    builds run as a user of their own (the staging becomes the code layer: theirs to read only)."""
    data = store.get_source(digest)
    if data is None:
        raise BuildFailed(f"source {digest} is not in the store")
    try:
        offload(source.unpack_source, data, staging, digest)
    except (ValueError, OSError, tarfile.TarError) as exc:
        raise BuildFailed(f"source {digest} could not be unpacked: {exc}") from None
    cwd = staging
    if box.separate:
        cwd = os.path.join(box.work, "src")
        offload(_copy_tree, staging, cwd)
        box.hand_over(cwd, tree=True, files=True)
    if kind == "file":
        return read_requirements_file(staging, requirements), os.path.join(cwd, os.path.normpath(requirements)), cwd
    text = requirement_lines_text(requirements or [])
    return text, box.write_input("requirements.txt", text), cwd


def _link_image(workshop, image, built, token):
    """Make ``image`` of its two layers (``built``: kind -> (layer id, marker)) and return its layer
    list as build records hold it; both layers count as used now (last in line for pruning)."""
    layers = [{"kind": kind, "id": layer_id, "sha256": marker.get("artifact_sha256"), "size": marker.get("size")}
              for kind, (layer_id, marker) in built.items()]
    for kind, (layer_id, _) in built.items():
        image_layout.touch_layer(workshop.images_dir, kind, layer_id)
    image_layout.link_image(workshop.images_dir, image, built["env"][0], built["code"][0],
                      {"image": image, "layers": layers, "built_by": workshop.name}, tmp_suffix=token)
    return layers


def pack_archives(workshop, layers, stopping=lambda: False):
    """``layers`` (an Outcome's) with the sha256 and size of each one's archive, packed first where it
    is not yet (builder.layers.ensure_archive). Raises OSError when one cannot be packed."""
    out = []
    for layer in layers:
        sha, size = ensure_archive(images_dir=workshop.images_dir, cache_dir=workshop.cache_dir,
                                   kind=layer["kind"], layer_id=layer["id"], stopping=stopping)
        out.append(dict(layer, sha256=sha, size=size))
    return out


def _resolve(engine, workshop, python, text, req_file, cwd, log, stopping, progress, source_digest):
    """``(pins, env)`` of the requirement text: remembered, or resolved by ``engine`` and remembered.

    ``env`` is ``(marker, was there)`` when the environment was made in the
    same pass (no environment of this python here to derive from, and an
    engine that installs while it resolves), else None.
    """
    if not text.strip():
        return [], None
    key = resolution_key(python.version, python.platform, text, engine.index_key())
    memo = os.path.join(workshop.cache_dir, "resolutions", image_layout.image_hex(key) + ".txt")
    try:
        with open(memo, encoding="utf-8") as f:
            return pinning.parse_requirements_lock(f.read()), None
    except (OSError, ValueError):
        pass
    env = None
    bases = [m for _, m in finished_layers(workshop.images_dir, "env")
             if (m.get("python"), m.get("platform"), m.get("by")) == (python.version, python.platform, engine.box.key)]
    if hasattr(engine, "install_unresolved") and not bases:
        pins, marker, was_there = build_env_unresolved(
            engine, images_dir=workshop.images_dir, python=python,
            requirements_file=req_file, cwd=cwd, log=log, stopping=stopping,
            builder=workshop.name, source_digest=source_digest, progress=progress)
        env = (marker, was_there)
    else:
        pins = engine.resolve(python=python, requirements_file=req_file, cwd=cwd, log=log, stopping=stopping)
    os.makedirs(os.path.dirname(memo), exist_ok=True)
    private.write_private(memo, pinning.lock_text(pins))   # whole or absent, even across a crash
    return pins, env


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def _copy_tree(src, dest):
    """A copy of the folder ``src`` at ``dest`` (links copied as links)."""
    shutil.copytree(src, dest, symlinks=True)


def _lap(start):
    return round(time.monotonic() - start, 3)
