"""tests/support.py ``need``: a missing requirement skips a test, or fails it when CORRAL_REQUIRE
names the requirement; and tests/conftest.py: CORRAL_REQUIRE is checked and every test gets its tier."""
import os
import subprocess
import sys

import pytest

from tests.support import REQUIREMENTS, need, need_root, required

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("what", sorted(REQUIREMENTS))
def test_without_corral_require_a_missing_requirement_skips_with_its_reason(monkeypatch, what):
    monkeypatch.delenv("CORRAL_REQUIRE", raising=False)
    with pytest.raises(pytest.skip.Exception) as out:
        need(what, "no such thing here")
    assert out.value.msg == "no such thing here"


@pytest.mark.parametrize("what", sorted(REQUIREMENTS))
def test_a_requirement_corral_require_names_fails_with_the_reason(monkeypatch, what):
    monkeypatch.setenv("CORRAL_REQUIRE", " " + " ,".join(sorted(REQUIREMENTS)) + " ")   # spaces are no part of a name
    with pytest.raises(pytest.fail.Exception) as out:
        need(what, "no such thing here")
    assert out.value.msg == f"CORRAL_REQUIRE names {what}, so this fails instead of skipping: no such thing here"
    assert not out.value.pytrace


def test_only_the_requirements_named_fail(monkeypatch):
    monkeypatch.setenv("CORRAL_REQUIRE", "root")
    with pytest.raises(pytest.skip.Exception):
        need("postgresql", "no server")
    with pytest.raises(pytest.fail.Exception):
        need("root", "not root")


def test_an_unknown_name_is_refused_rather_than_ignored(monkeypatch):
    monkeypatch.setenv("CORRAL_REQUIRE", "postgres,root")
    with pytest.raises(ValueError, match="CORRAL_REQUIRE names postgres, which this suite does not know"):
        required()
    monkeypatch.delenv("CORRAL_REQUIRE")
    with pytest.raises(ValueError, match=r"need\('ipv6'\): not one of postgresql, root, netns"):
        need("ipv6", "no IPv6")


def test_need_root_goes_on_as_root_only(monkeypatch):
    monkeypatch.setenv("CORRAL_REQUIRE", "root")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    need_root("changing user needs root")  # returns
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="changing user needs root"):
        need_root("changing user needs root")


def pytest_run(*args, require=None):
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_REQUIRE"}
    if require is not None:
        env["CORRAL_REQUIRE"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_run_with_an_unknown_requirement_stops_before_any_test():
    done = pytest_run("--collect-only", "-q", "tests/unit/test_need.py", require="postgresql,nets")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "CORRAL_REQUIRE names nets, which this suite does not know" in done.stderr


def test_every_test_gets_the_marker_of_its_folder():
    done = pytest_run("--collect-only", "-q", "-m", "e2e", "tests/e2e/test_logs_exec.py", "tests/unit/test_need.py")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/e2e/test_logs_exec.py::") for line in collected)
