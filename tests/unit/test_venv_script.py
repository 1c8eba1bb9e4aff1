"""./up and ./run-tests refuse an interpreter corral cannot use at once, in one sentence, and
leave no half-made .venv (scripts/venv.sh), whatever python3 the newcomer's PATH offers."""
import os
import shutil
import subprocess

import pytest

from tests.e2e.readme import ROOT

OLD_PYTHON = """#!/bin/sh
# a Python 3.10: fails the version check, says its version
case "$1" in -V) echo "Python 3.10.12";; *) exit 1;; esac
"""


@pytest.fixture
def checkout(tmp_path):
    for name in ("up", "run-tests", "pyproject.toml"):
        shutil.copy2(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "scripts"), tmp_path / "scripts")
    return tmp_path


@pytest.mark.parametrize("script", ["./up", "./run-tests"])
def test_an_old_python_is_refused_naming_its_version_and_the_way_out(checkout, script):
    old = checkout / "python3.10"
    old.write_text(OLD_PYTHON)
    old.chmod(0o755)
    done = subprocess.run([script], cwd=checkout, env=dict(os.environ, PYTHON=str(old)), capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (f"corral needs Python 3.11 or newer, and {old} is Python 3.10.12: point PYTHON= at "
                           f"another, e.g. PYTHON=python3.12 {script}\n")
    assert not (checkout / ".venv").exists()


def test_a_python_that_is_not_there_is_named(checkout):
    done = subprocess.run(["./up"], cwd=checkout, env=dict(os.environ, PYTHON="corral-no-such-python"),
                          capture_output=True, text=True)
    assert done.returncode == 2 and "there is no corral-no-such-python on PATH" in done.stderr
    assert not (checkout / ".venv").exists()


def test_a_venv_an_interrupted_first_run_left_without_pip_is_made_again(checkout):
    """Ctrl-C while `python -m venv` ran left .venv/bin/python and no pip: every later run said
    'No module named pip' and stopped."""
    made = subprocess.run(["python3", "-m", "venv", "--without-pip", str(checkout / ".venv")], capture_output=True)
    assert made.returncode == 0
    (checkout / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n[project.optional-dependencies]\n'
                                             'test = []\n[tool.setuptools]\npy-modules = []\n')
    done = subprocess.run(["bash", "-c", "source scripts/venv.sh && $venv/bin/python -c 'import pip'"],
                          cwd=checkout, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (checkout / ".venv" / ".corral-venv-made").exists()
