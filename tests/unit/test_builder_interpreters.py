"""Which interpreter a venv is made from, for an app's ``python`` field."""
import os
import shutil
import stat
import sys
import tempfile

import pytest

from builder.failures import BuildFailed
from builder.interpreters import Interpreter, find_interpreter, own_interpreter, probe, shared
from corral.reach import open_to_others

OWN = Interpreter(executable="/usr/bin/python3", version="3.11.7", platform="linux-x86_64-cpython")
PY312 = Interpreter(executable="/opt/py/bin/python3.12", version="3.12.1", platform="linux-x86_64-cpython")


def on_path(public=lambda path: True, elsewhere=(), **found):
    """A PATH holding ``{command: Interpreter}`` (and ``elsewhere``, interpreters off PATH that run);
    anything else is absent. ``public`` says which paths every user may run."""
    runs = list(found.values()) + list(elsewhere)
    return dict(which=lambda cmd: found[cmd].executable if cmd in found else None,
                run=lambda exe: next((i for i in runs if i.executable == exe), None), public=public)


@pytest.mark.parametrize("requested", [None, "3.11"], ids=["absent", "same-major-minor"])
def test_own_interpreter_when_it_matches(requested):
    assert find_interpreter(requested, "b1", own=OWN, **on_path(**{"python3.12": PY312})) == OWN


def test_another_version_from_path():
    assert find_interpreter("3.12", "b1", own=OWN, **on_path(**{"python3.12": PY312})) == PY312


def test_missing_version_names_version_and_builder():
    with pytest.raises(BuildFailed, match=r"^python 3\.9 is not available on builder b1$"):
        find_interpreter("3.9", "b1", own=OWN, **on_path())


def test_a_command_on_path_that_does_not_run_counts_as_absent():
    # A pyenv shim for an unselected version is on PATH but exits non-zero.
    with pytest.raises(BuildFailed, match="python 3.12 is not available on builder b1"):
        find_interpreter("3.12", "b1", own=OWN, which=lambda cmd: "/shims/" + cmd, run=lambda exe: None)


def test_a_command_reporting_another_version_is_refused():
    with pytest.raises(BuildFailed, match="python 3.10 is not available on builder b2"):
        find_interpreter("3.10", "b2", own=OWN, which=lambda cmd: PY312.executable, run=lambda exe: PY312)


@pytest.mark.parametrize("requested", ["3", "three", "3.11.7"])
def test_malformed_version(requested):
    with pytest.raises(BuildFailed, match="is not of the form MAJOR.MINOR"):
        find_interpreter(requested, "b1", own=OWN, **on_path())


def test_probe_of_the_running_interpreter_agrees_with_own():
    assert probe(sys.executable) == own_interpreter()


def test_probe_of_a_missing_command_is_none(tmp_path):
    assert probe(str(tmp_path / "no-python")) is None


PRIVATE = Interpreter(executable="/root/.pyenv/versions/3.11.7/bin/python3.11", version="3.11.7",
                      platform="linux-x86_64-cpython")
SYSTEM = Interpreter(executable="/usr/bin/python3.11", version="3.11.2", platform="linux-x86_64-cpython")
SYSTEM_312 = Interpreter(executable="/usr/bin/python3.11", version="3.12.3", platform="linux-x86_64-cpython")


def not_private(path):
    return not path.startswith("/root/")


def test_an_own_interpreter_in_a_private_home_gives_way_to_a_shared_one_on_path():
    assert find_interpreter(None, "b1", own=PRIVATE, **on_path(public=not_private, **{"python3.11": SYSTEM})) == SYSTEM


def test_a_shared_interpreter_off_path_is_found_in_the_system_places():
    got = find_interpreter("3.11", "b1", own=PRIVATE, **on_path(public=not_private, elsewhere=[SYSTEM]))
    assert got == SYSTEM


def test_without_a_shared_interpreter_of_its_version_the_private_one_is_kept():
    assert find_interpreter(None, "b1", own=PRIVATE, **on_path(public=not_private)) == PRIVATE


def test_a_shared_interpreter_of_another_version_is_not_taken():
    assert find_interpreter(None, "b1", own=PRIVATE, **on_path(public=not_private, elsewhere=[SYSTEM_312])) == PRIVATE


def test_a_shared_own_interpreter_is_kept_whatever_else_there_is():
    assert find_interpreter(None, "b1", own=SYSTEM, **on_path(elsewhere=[PRIVATE])) == SYSTEM


def test_on_this_machine_a_copy_in_a_0700_folder_is_replaced_by_one_every_user_can_run():
    """The real walk and the real probe: whatever ``shared`` returns, other users can run it, or
    there is no such interpreter of this version here and the private copy is all there is."""
    folder = tempfile.mkdtemp(prefix="corral-private-py-")
    try:
        os.chmod(folder, stat.S_IRWXU)
        python = os.path.join(folder, "python3")
        shutil.copy2(os.path.realpath(sys.executable), python)
        private = own_interpreter()
        private = Interpreter(executable=python, version=private.version, platform=private.platform)
        got = shared(private)
        mm = "%d.%d" % sys.version_info[:2]
        candidates = [shutil.which(f"python{mm}"), f"/usr/local/bin/python{mm}", f"/usr/bin/python{mm}"]
        if any(c and open_to_others(c) and probe(c) for c in candidates):
            assert got != private and open_to_others(got.executable) and got.major_minor == mm
        else:
            assert got == private
    finally:
        shutil.rmtree(folder, ignore_errors=True)
