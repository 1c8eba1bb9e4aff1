"""Install engines: resolve a requirement set into a lock, and install a lock into a virtualenv.

Two engines with one contract, chosen by :func:`pick_engine`:

- ``uv`` (preferred, when its binary is found): ``uv pip compile
  --generate-hashes`` resolves once; ``uv venv`` + ``uv pip sync
  --require-hashes --compile-bytecode`` installs, fetching in parallel into
  uv's own content-addressed cache under ``<cache dir>/uv``, shared by every
  build on the builder. ``sync`` also brings a copy of an older environment
  to exactly the lock (see :mod:`builder.layers`).
- ``pip`` (fallback): ``pip install --dry-run --report`` resolves; every pin
  is fetched or built as a wheel by its own ``pip wheel --no-deps`` in
  parallel into the shared wheelhouse ``<cache dir>/wheels``; one offline
  ``pip install --no-index --no-deps`` fills the new venv, then
  ``compileall`` writes its bytecode.

Both read the operator's index settings (:mod:`builder.pipconfig`), run by
argv with a deadline into the build log (:func:`builder.commands.run_logged`),
and raise BuildFailed with the installer's own reason in one sentence.
"""
import concurrent.futures
import json
import os
import re
import shutil
import sys

from builder import pinning
from builder.commands import run_logged
from builder.failures import BuildFailed, installer_failure_sentence
from builder.pipconfig import pip_environment, uv_environment, uv_index_args
from corral.reach import open_to_others

PIP_PARALLEL = 4   # concurrent `pip wheel` fetches of the pip engine


_UV_STEP = re.compile(r"^(Resolved|Prepared|Installed) (\d+) packages?\b")


def uv_phase(line, resolved):
    """The build phase a line of ``uv pip install``'s output starts, or None (purely computational).

    uv says "Resolved N packages" once its resolution is done (the fetches
    begin; with no progress bar there is no count of them as they go),
    "Prepared K packages" once those it lacked are fetched and built, and
    "Installed K packages" before it compiles bytecode. ``resolved`` is the
    N seen so far (0 before).
    """
    match = _UV_STEP.match(line.strip())
    if not match:
        return None
    step, n = match.group(1), int(match.group(2))
    if step == "Resolved":
        return f"fetch ({n} package{'s' if n != 1 else ''} resolved)"
    if step == "Prepared":
        return f"install (fetched {n}/{resolved or n})"
    return f"compile bytecode ({n} installed)"


def uv_progress(progress):
    """An ``on_line`` for ``uv pip install`` telling ``progress`` each phase uv enters."""
    resolved = [0]

    def on_line(line):
        phase = uv_phase(line, resolved[0])
        if phase is not None:
            if phase.startswith("fetch"):
                resolved[0] = int(line.split()[1])
            progress(phase)

    return on_line


def find_uv():
    """The uv binary: the ``uv`` package's, else ``uv`` on PATH; None when there is none."""
    try:
        import uv  # noqa: PLC0415 - optional: the pip engine works without it
        path = uv.find_uv_bin()
        if path and os.access(path, os.X_OK):
            return path
    except (ImportError, FileNotFoundError):
        pass
    return shutil.which("uv")


def pick_engine(name, *, box, index, timeout):
    """The engine called ``name`` ("uv", "pip", or "auto": uv when found, else pip), running its
    commands as ``box`` says (:class:`builder.buildusers.Box`: who, which caches, which folders)."""
    uv = find_uv() if name in ("uv", "auto") else None
    if name == "uv" and uv is None:
        raise ValueError("install engine 'uv' was asked for but no uv binary was found")
    if uv is not None:
        return UvEngine(uv, box=box, index=index, timeout=timeout)
    if name not in ("pip", "auto"):
        raise ValueError(f"install engine {name!r} is not one of uv, pip, auto")
    return PipEngine(box=box, index=index, timeout=timeout)


class _Engine:
    name = "?"

    def __init__(self, *, box, index, timeout):
        self.box = box
        self.index = index
        self.timeout = timeout

    def _run(self, argv, action, *, log, stopping, cwd=None, env=None, on_line=None):
        done = run_logged(argv, log_path=log, timeout=self.timeout, stopping=stopping, cwd=cwd, env=env,
                          on_line=on_line, box=self.box)
        if done.timed_out:
            raise BuildFailed(f"{self.name} did not {action} the requirements within {self.timeout:g}s (see {log})")
        if done.returncode != 0:
            raise BuildFailed(installer_failure_sentence(self.name, action, done.output, done.returncode, log))
        return done

    def index_key(self):
        """What the engine installs from, as a list of strings (part of the resolution memo key)."""
        return [self.name] + uv_index_args(self.index, resolving=True) + ([self.box.key] if self.box.key else [])

    def _read_lock(self, path):
        """The pins of the lock the installer wrote at ``path`` (the build's own folder)."""
        try:
            return pinning.parse_requirements_lock(self.box.read_output(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildFailed(f"{self.name} left no readable lock ({exc})") from None


class UvEngine(_Engine):
    """uv: one resolve, parallel cached fetches, hard links from its cache."""

    name = "uv"

    def __init__(self, uv, **kw):
        super().__init__(**kw)
        self.uv = uv
        self.env = uv_environment(self.index, self.box.env)
        self.env["UV_CACHE_DIR"] = self.box.uv_cache
        self.env.setdefault("UV_NO_PROGRESS", "1")

    def resolve(self, *, python, requirements_file, cwd, log, stopping):
        """The pins of ``requirements_file`` resolved for ``python`` (an Interpreter)."""
        out = os.path.join(self.box.work, "lock.txt")
        self._run([self.uv, "pip", "compile", "--quiet", "--generate-hashes", "--no-header", "--no-annotate",
                   "--python", python.executable, *uv_index_args(self.index, resolving=True),
                   "-o", out, requirements_file], "resolve", log=log, stopping=stopping, cwd=cwd, env=self.env)
        return self._read_lock(out)

    relocatable = True   # its venvs' scripts find their python relative to themselves: built aside, renamed in

    def make_venv(self, *, python, dest, log, stopping):
        """A new, empty, relocatable virtualenv at ``dest``."""
        self._run([self.uv, "venv", "--quiet", "--relocatable", "--python", python.executable, dest],
                  "create a venv for", log=log, stopping=stopping, env=self.env)

    def install_unresolved(self, *, venv, requirements_file, cwd, log, stopping):
        """Resolve and install ``requirements_file`` into ``venv`` in one pass (fetches overlap the
        resolve); return the pins of the lock (see :meth:`lock_installed`)."""
        self.install_requirements(venv=venv, requirements_file=requirements_file, cwd=cwd, log=log,
                                  stopping=stopping)
        return self.lock_installed(venv=venv, requirements_file=requirements_file, cwd=cwd, log=log,
                                   stopping=stopping)[0]

    def install_requirements(self, *, venv, requirements_file, cwd, log, stopping, progress=lambda phase: None):
        """Resolve and install ``requirements_file`` into ``venv`` with one ``uv pip install``, its
        bytecode compiled; ``progress`` is told uv's steps as its output names them."""
        python = os.path.join(venv, "bin", "python")
        self._run([self.uv, "pip", "install", "--compile-bytecode", "--python", python,
                   *uv_index_args(self.index, resolving=True), "-r", requirements_file],
                  "install", log=log, stopping=stopping, cwd=cwd, env=self.env, on_line=uv_progress(progress))

    def lock_installed(self, *, venv, requirements_file, cwd, log, stopping):
        """``(pins, changed)``: the lock of ``requirements_file``, made from uv's now warm cache
        (offline), checked against what ``venv`` holds; a difference is synced to the lock
        (``changed`` true, ``venv`` altered)."""
        python = os.path.join(venv, "bin", "python")
        out = os.path.join(self.box.work, "lock.txt")
        self._run([self.uv, "pip", "compile", "--quiet", "--offline", "--generate-hashes", "--no-header",
                   "--no-annotate", "--python", python, *uv_index_args(self.index, resolving=True),
                   "-o", out, requirements_file], "resolve", log=log, stopping=stopping, cwd=cwd, env=self.env)
        pins = self._read_lock(out)
        frozen = self._run([self.uv, "pip", "freeze", "--python", python], "list", log=log, stopping=stopping,
                           env=self.env).output
        installed = sorted(p.requirement for p in pinning.parse_requirements_lock(
            "\n".join(line for line in frozen.splitlines() if "==" in line and not line.startswith("$"))))
        if installed == pinning.pin_set(pins):
            return pins, False
        self.install(venv=venv, lock_file=self.box.write_input("relock.txt", pinning.lock_text(pins)), log=log,
                     stopping=stopping)
        return pins, True

    def install(self, *, venv, lock_file, log, stopping, progress=lambda phase: None):
        """Make ``venv`` hold exactly the lock in ``lock_file``, with its bytecode compiled."""
        progress("install")
        self._run([self.uv, "pip", "sync", "--require-hashes", "--compile-bytecode",
                   "--python", os.path.join(venv, "bin", "python"), *uv_index_args(self.index, resolving=False),
                   lock_file], "install", log=log, stopping=stopping, env=self.env, on_line=uv_progress(progress))


class PipEngine(_Engine):
    """pip: resolve with a report, fetch every wheel in parallel, install once offline."""

    name = "pip"
    relocatable = False   # python -m venv scripts name their venv: built at the final path

    def __init__(self, **kw):
        super().__init__(**kw)
        self.env = pip_environment(self.index, self.box.env)
        if self.box.separate and not open_to_others(sys.executable):
            raise BuildFailed(f"the pip engine runs the builder's own pip ({sys.executable}), which a build user"
                              " cannot run: install uv, or the builder in a folder other users can reach")

    def _run(self, argv, action, **kw):
        return super()._run(argv, action, **dict(kw, env=self.env))

    def resolve(self, *, python, requirements_file, cwd, log, stopping):
        """The pins of ``requirements_file`` resolved for ``python`` (an Interpreter)."""
        report = os.path.join(self.box.work, "report.json")
        self._run([sys.executable, "-m", "pip", "--python", python.executable, "install", "--dry-run",
                   "--ignore-installed", "--no-input", "--progress-bar", "off", "--quiet", "--report", report,
                   "-r", requirements_file], "resolve", log=log, stopping=stopping, cwd=cwd)
        try:
            return pinning.pins_from_pip_report(json.loads(self.box.read_output(report)))
        except (OSError, ValueError) as exc:
            raise BuildFailed(f"pip left no readable report ({exc})") from None

    def make_venv(self, *, python, dest, log, stopping):
        """A new, empty virtualenv at ``dest`` (no pip in it: the builder's pip installs)."""
        done = run_logged([python.executable, "-m", "venv", "--without-pip", dest], log_path=log,
                          timeout=self.timeout, stopping=stopping, env=self.env, box=self.box)
        if done.returncode != 0 or done.timed_out:
            raise BuildFailed(f"python -m venv failed with {python.executable} (exit status {done.returncode};"
                              f" see {log})")

    def install(self, *, venv, lock_file, log, stopping, progress=lambda phase: None):
        """Fetch every pin's wheel in parallel into the wheelhouse, then install them offline into ``venv``."""
        with open(lock_file, encoding="utf-8") as f:
            pins = pinning.parse_requirements_lock(f.read())
        wheelhouse = self.box.wheelhouse
        os.makedirs(wheelhouse, exist_ok=True)
        python = os.path.join(venv, "bin", "python")
        have = _wheel_names(wheelhouse)
        missing = [p for p in pins if (p.name, p.version) not in have]
        done_count = [len(pins) - len(missing)]
        progress(f"fetch {done_count[0]}/{len(pins)}")

        def fetch(pin):
            self._run([sys.executable, "-m", "pip", "--python", python, "wheel", "--no-deps", "--no-input",
                       "--progress-bar", "off", "--quiet", "-w", wheelhouse, pin.requirement],
                      "fetch", log=log, stopping=stopping)
            done_count[0] += 1
            progress(f"fetch {done_count[0]}/{len(pins)}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=PIP_PARALLEL) as pool:
            for future in [pool.submit(fetch, pin) for pin in missing]:
                future.result()
        progress("install")
        plain = self.box.write_input("pins.txt", "".join(p.requirement + "\n" for p in pins))
        self._run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps",
                   "--no-input", "--progress-bar", "off", "--quiet", "--find-links", wheelhouse, "-r", plain],
                  "install", log=log, stopping=stopping)
        self._run([python, "-m", "compileall", "-q", "-j", "0", venv], "compile", log=log, stopping=stopping)


def _wheel_names(wheelhouse):
    """``(normalized name, version)`` of every wheel in ``wheelhouse``."""
    found = set()
    for name in os.listdir(wheelhouse):
        if name.endswith(".whl"):
            parts = name[:-4].split("-")
            if len(parts) >= 5:
                found.add((pinning.normalize_name(parts[0]), parts[1]))
    return found
