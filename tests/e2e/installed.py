"""The ``corral`` that end-to-end clusters run: installed, not checked out.

Once per test session the checkout is installed with a plain ``pip install``
(not editable) into a scratch virtualenv, as a user installs it, and every
e2e cluster and command runs that venv's ``corral`` console script from a
folder outside the checkout. A module that only works from the source tree,
or a data file missing from the wheel (a schema, say), fails a test there.
"""
import atexit
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


def _install():
    base = tempfile.mkdtemp(prefix="corral-installed-")
    atexit.register(shutil.rmtree, base, True)
    venv, source = os.path.join(base, "venv"), os.path.join(base, "source")
    copy_checkout(source)   # a stale build/ in the checkout would put removed modules in the wheel
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    done = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", source], capture_output=True, text=True, cwd=base)
    if done.returncode:
        raise AssertionError(f"pip install of the checkout failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    script = os.path.join(venv, "bin", "corral")
    probe = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=base)
    assert probe.returncode == 0, f"the installed corral does not run: {probe.stderr.strip()[-500:]}"
    where = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import corral; print(corral.__file__)"],
                           capture_output=True, text=True, cwd=base).stdout.strip()
    assert where.startswith(venv), f"the installed corral imports {where}, not the venv's copy"
    return script
