"""Installers' reasons for a failed resolve or install (pip, uv), taken from captured output samples."""
import pytest

from builder.failures import installer_failure_sentence, pip_failure_sentence, pip_reason, uv_reason

NOT_FOUND = """\
Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple
WARNING: Location 'file:///opt/pypi/simple/nonexistent-pkg-zz/' is ignored: it is neither a file nor a directory.
ERROR: Could not find a version that satisfies the requirement nonexistent-pkg-zz (from versions: none)
ERROR: No matching distribution found for nonexistent-pkg-zz
"""

BAD_VERSION = """\
ERROR: Could not find a version that satisfies the requirement six==99.1 (from versions: 1.16.0, 1.17.0)
ERROR: No matching distribution found for six==99.1
"""

INVALID = "ERROR: Invalid requirement: 'six[[' (from line 1 of /tmp/r.txt)\n"

BUILD_ERROR = """\
Collecting broken==1.0
  Building wheel for broken (pyproject.toml) ... error
  error: subprocess-exited-with-error
  ERROR: this indented line is not pip's verdict
ERROR: Failed building wheel for broken
ERROR: Could not build wheels for broken, which is required to install pyproject.toml-based projects
"""

ONLY_SUMMARY = "ERROR: No matching distribution found for zz\n"


@pytest.mark.parametrize("output, reason", [
    (NOT_FOUND, "Could not find a version that satisfies the requirement nonexistent-pkg-zz (from versions: none)"),
    (BAD_VERSION, "Could not find a version that satisfies the requirement six==99.1 (from versions: 1.16.0, 1.17.0)"),
    (INVALID, "Invalid requirement: 'six[[' (from line 1 of /tmp/r.txt)"),
    (BUILD_ERROR, "Could not build wheels for broken, which is required to install pyproject.toml-based projects"),
    (ONLY_SUMMARY, "No matching distribution found for zz"),
    ("Collecting six\nKilled\n", None),
    ("", None),
], ids=["not-found", "bad-version", "invalid-requirement", "wheel-build", "only-summary", "no-error-line", "empty"])
def test_pip_reason(output, reason):
    assert pip_reason(output) == reason


def test_sentence_carries_pips_reason():
    assert pip_failure_sentence(NOT_FOUND, 1, "/c/logs/build-1.log") == (
        "pip could not install the requirements: Could not find a version that satisfies the requirement"
        " nonexistent-pkg-zz (from versions: none)")


def test_sentence_without_a_reason_points_at_the_log():
    sentence = pip_failure_sentence("Killed\n", -9, "/c/logs/build-1.log")
    assert "exit status -9" in sentence and "/c/logs/build-1.log" in sentence
    assert "\n" not in sentence


@pytest.mark.parametrize("output, reason", [
    ("error: No solution found when resolving dependencies\n  cause: Because nonexistent-pkg-zz was not found"
     " in the package registry and you require nonexistent-pkg-zz, we can conclude that your requirements"
     " are unsatisfiable.\n",
     "Because nonexistent-pkg-zz was not found in the package registry and you require nonexistent-pkg-zz,"
     " we can conclude that your requirements are unsatisfiable."),
    ("Resolved 1 package\nerror: Failed to build `numpy==1.21.0`\n  cause: The build backend returned an error\n"
     "  cause: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)\n",
     "Failed to build `numpy==1.21.0`: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)"),
    ("error: Distribution not found at: file:///nope\n", "Distribution not found at: file:///nope"),
    ("Resolved 3 packages\n", None),
], ids=["unknown-package", "build-failure", "no-cause", "no-error"])
def test_uv_reason_is_the_error_with_its_last_cause(output, reason):
    assert uv_reason(output) == reason


def test_installer_sentence_names_the_engine_and_action():
    sentence = installer_failure_sentence("uv", "resolve", "error: bad thing\n", 1, "/log")
    assert sentence == "uv could not resolve the requirements: bad thing"
    assert "see /log" in installer_failure_sentence("pip", "install", "", 2, "/log")
