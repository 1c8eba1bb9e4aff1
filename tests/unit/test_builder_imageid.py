"""Layer and image ids: stable for the same inputs, different when any input differs."""
import hashlib
import re

import pytest

from builder.imageid import (
    FORMAT, code_id, env_id, env_id_of_lock, image_id, requirement_lines_text, resolution_key,
)
from builder.pinning import Pin
from corral.canonical import canonical_bytes

PINS = ["django==4.2.16", "six==1.16.0"]
SOURCE = "sha256:" + "ab" * 32


def test_ids_have_the_sha256_form():
    env, code = env_id("3.11.7", "linux-x86_64-cpython", PINS), code_id("3.11.7", SOURCE)
    for value in (env, code, image_id(env, code)):
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", value)


def test_env_id_ignores_the_order_of_pins():
    assert env_id("3.11.7", "p", PINS) == env_id("3.11.7", "p", list(reversed(PINS)))


@pytest.mark.parametrize("python, platform, pins", [
    ("3.11.8", "linux-x86_64-cpython", PINS),
    ("3.11.7", "linux-aarch64-cpython", PINS),
    ("3.11.7", "linux-x86_64-cpython", ["django==4.2.17", "six==1.16.0"]),
    ("3.11.7", "linux-x86_64-cpython", []),
], ids=["python", "platform", "a-version", "no-pins"])
def test_each_env_input_changes_the_env_id(python, platform, pins):
    assert env_id(python, platform, pins) != env_id("3.11.7", "linux-x86_64-cpython", PINS)


def test_the_same_name_and_version_with_other_files_is_another_environment():
    """An app whose requirements name another index (or a direct URL) serving its own six==1.16.0
    never shares its environment with an app that has PyPI's."""
    py = type("Interpreter", (), {"version": "3.11.7", "platform": "p"})
    pypi = [Pin("six", "1.16.0", ("sha256:" + "a" * 64,))]
    other = [Pin("six", "1.16.0", ("sha256:" + "e" * 64,))]
    assert env_id_of_lock(py, pypi, SOURCE) != env_id_of_lock(py, other, SOURCE)
    assert env_id_of_lock(py, pypi, SOURCE) == env_id_of_lock(py, pypi, "sha256:" + "cd" * 32), \
        "a hashed lock's environment is shared across apps"


def test_a_pin_without_a_hash_makes_the_environment_the_apps_own():
    py = type("Interpreter", (), {"version": "3.11.7", "platform": "p"})
    local = [Pin("mylib", "1.0", ()), Pin("six", "1.16.0", ("sha256:" + "a" * 64,))]
    assert env_id_of_lock(py, local, SOURCE) != env_id_of_lock(py, local, "sha256:" + "cd" * 32)


def test_code_id_changes_with_the_source_and_the_python():
    base = code_id("3.11.7", SOURCE)
    assert code_id("3.11.7", "sha256:" + "cd" * 32) != base
    assert code_id("3.12.1", SOURCE) != base


def test_a_change_of_code_alone_keeps_the_env_and_changes_the_image():
    env = env_id("3.11.7", "p", PINS)
    one, two = code_id("3.11.7", SOURCE), code_id("3.11.7", "sha256:" + "cd" * 32)
    assert image_id(env, one) != image_id(env, two)


def test_image_id_is_the_documented_hash():
    # Pins the recipe: every builder must compute the same id for the same layers.
    env, code = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    canonical = b'{"code":"' + code.encode() + b'","env":"' + env.encode() + b'","format":2}'
    assert FORMAT == 2
    assert canonical_bytes({"format": FORMAT, "env": env, "code": code}, ascii_only=True) == canonical
    assert image_id(env, code) == "sha256:" + hashlib.sha256(canonical).hexdigest()


def test_resolution_key_covers_text_and_index():
    base = resolution_key("3.11.7", "p", "six\n", ["uv"])
    assert resolution_key("3.11.7", "p", "six\n", ["uv"]) == base
    assert resolution_key("3.11.7", "p", "six==1\n", ["uv"]) != base
    assert resolution_key("3.11.7", "p", "six\n", ["uv", "--index-url", "x"]) != base


@pytest.mark.parametrize("lines, text", [
    ([], ""),
    (["six"], "six\n"),
    (["six", "requests==2.31"], "six\nrequests==2.31\n"),
], ids=["empty", "one", "two-in-order"])
def test_requirement_list_becomes_one_line_each(lines, text):
    assert requirement_lines_text(lines) == text
