"""The image id: stable for the same inputs, different when any input differs."""
import dataclasses
import re

import pytest

from builder.imageid import FORMAT, ImageInputs, canonical_json, image_id, requirement_lines_text

BASE = ImageInputs(python="3.11.7", platform="linux-x86_64-cpython", requirements="six\n",
                   source_digest="sha256:" + "ab" * 32)


def test_id_has_the_image_id_form():
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id(BASE))


def test_same_inputs_give_the_same_id():
    again = ImageInputs(python="3.11.7", platform="linux-x86_64-cpython", requirements="six\n",
                        source_digest="sha256:" + "ab" * 32)
    assert image_id(again) == image_id(BASE)


@pytest.mark.parametrize("field, value", [
    ("python", "3.11.8"),
    ("platform", "linux-aarch64-cpython"),
    ("requirements", "six==1.16.0\n"),
    ("requirements", ""),
    ("source_digest", "sha256:" + "cd" * 32),
], ids=["python", "platform", "requirements", "no-requirements", "source"])
def test_each_input_changes_the_id(field, value):
    assert image_id(dataclasses.replace(BASE, **{field: value})) != image_id(BASE)


def test_id_is_the_documented_hash():
    # Pins the recipe: other builders must compute the same id for the same inputs.
    import hashlib
    doc = {"format": FORMAT, "python": "3.11.7", "platform": "linux-x86_64-cpython",
           "requirements": "six\n", "source_digest": "sha256:" + "ab" * 32}
    canonical = (b'{"format":1,"platform":"linux-x86_64-cpython","python":"3.11.7",'
                 b'"requirements":"six\\n","source_digest":"sha256:' + b"ab" * 32 + b'"}')
    assert canonical_json(doc) == canonical
    assert image_id(BASE) == "sha256:" + hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize("lines, text", [
    ([], ""),
    (["six"], "six\n"),
    (["six", "requests==2.31"], "six\nrequests==2.31\n"),
], ids=["empty", "one", "two-in-order"])
def test_requirement_list_becomes_one_line_each(lines, text):
    assert requirement_lines_text(lines) == text


def test_list_and_file_with_the_same_text_are_the_same_image():
    from_list = dataclasses.replace(BASE, requirements=requirement_lines_text(["six"]))
    assert image_id(from_list) == image_id(BASE)
