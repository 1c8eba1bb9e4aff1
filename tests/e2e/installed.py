"""The ``corral`` that end-to-end clusters run: installed from its wheel, not checked out.

Once per test session a wheel is built from a clean copy of the checkout
(``pip wheel``, as a release is built: docs/PRODUCTION.md installs it) and
installed into a scratch virtualenv, as an operator installs it; every e2e
cluster and command runs that venv's ``corral`` console script from a
folder outside the checkout. A module that only works from the source tree,
or a data file missing from the wheel (a schema, say), fails a test there.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_installed = {}


def corral_bin():
    """The path of the installed ``corral`` script (installed on the first call)."""
    if "bin" not in _installed:
        _installed["bin"] = _install()
    return _installed["bin"]


def copy_checkout(dest):
    """The checkout's files as a fresh clone would hold them (tracked, and new files not ignored),
    without what builds and runs leave in it (``build/``, ``*.egg-info``, ``.venv``)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in names)):
        src = os.path.join(ROOT, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, name))


def build_wheel(source, dest, python=sys.executable):
    """Build the wheel of the project in ``source`` into ``dest`` (no dependencies) and return its path."""
    os.makedirs(dest, exist_ok=True)
    done = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
                           "-w", dest, source], capture_output=True, text=True, cwd=dest)
    if done.returncode:
        raise AssertionError(f"building the wheel of {source} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    (wheel,) = [os.path.join(dest, n) for n in os.listdir(dest) if n.startswith("corral-") and n.endswith(".whl")]
    return wheel


def install_wheel(wheel, venv):
    """A new virtualenv ``venv`` with ``wheel`` and its dependencies installed; returns its ``corral`` script."""
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    done = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", wheel], capture_output=True, text=True,
                          cwd=os.path.dirname(venv))
    if done.returncode:
        raise AssertionError(f"pip install of {wheel} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return os.path.join(venv, "bin", "corral")


def _install():
    base = tempfile.mkdtemp(prefix="corral-installed-")
    atexit.register(shutil.rmtree, base, True)
    venv, source, dist = (os.path.join(base, n) for n in ("venv", "source", "dist"))
    copy_checkout(source)   # a stale build/ in the checkout would put removed modules in the wheel
    wheel = build_wheel(source, dist)
    _installed["wheel"] = wheel
    import corral
    assert os.path.basename(wheel).startswith(f"corral-{corral.__version__}-"), f"{wheel} is not this version's"
    script = install_wheel(wheel, venv)
    probe = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=base)
    assert probe.returncode == 0, f"the installed corral does not run: {probe.stderr.strip()[-500:]}"
    where = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import corral; print(corral.__file__)"],
                           capture_output=True, text=True, cwd=base).stdout.strip()
    assert where.startswith(venv), f"the installed corral imports {where}, not the venv's copy"
    said = subprocess.run([script, "version", "--client", "-o", "json"], capture_output=True, text=True, cwd=base)
    assert json.loads(said.stdout)[0]["version"] == corral.__version__, said.stdout + said.stderr
    return script
