"""Which interpreter a venv is made from, for an app's ``python`` field."""
import sys

import pytest

from builder.failures import BuildFailed
from builder.interpreters import Interpreter, find_interpreter, own_interpreter, probe

OWN = Interpreter(executable="/usr/bin/python3", version="3.11.7", platform="linux-x86_64-cpython")
PY312 = Interpreter(executable="/opt/py/bin/python3.12", version="3.12.1", platform="linux-x86_64-cpython")


def on_path(**found):
    """A PATH holding ``{command: Interpreter}``; anything else is absent."""
    return dict(which=lambda cmd: found[cmd].executable if cmd in found else None,
                run=lambda exe: next((i for i in found.values() if i.executable == exe), None))


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
