"""The lock: hashed requirement files and pip reports become the same sorted pins."""
import pytest

from builder.pinning import Pin, lock_text, normalize_name, parse_requirements_lock, pin_set, pins_from_pip_report

UV_OUTPUT = """\
Django==4.2.16 \\
    --hash=sha256:bbbb \\
    --hash=sha256:aaaa
asgiref==3.8.1 \\
    --hash=sha256:cccc
    # via django
python-dateutil==2.9.0.post0 \\
    --hash=sha256:dddd
"""


def test_uv_output_becomes_sorted_normalized_pins_with_sorted_hashes():
    assert parse_requirements_lock(UV_OUTPUT) == [
        Pin("asgiref", "3.8.1", ("sha256:cccc",)),
        Pin("django", "4.2.16", ("sha256:aaaa", "sha256:bbbb")),
        Pin("python-dateutil", "2.9.0.post0", ("sha256:dddd",)),
    ]


def test_lock_text_reads_back_to_the_same_pins():
    pins = parse_requirements_lock(UV_OUTPUT)
    assert parse_requirements_lock(lock_text(pins)) == pins
    assert lock_text(pins).startswith("asgiref==3.8.1 \\\n    --hash=sha256:cccc\ndjango==4.2.16 \\\n")


def test_pip_report_gives_the_same_pin_set_as_uv():
    report = {"install": [
        {"metadata": {"name": "Django", "version": "4.2.16"},
         "download_info": {"archive_info": {"hashes": {"sha256": "aaaa"}}}},
        {"metadata": {"name": "asgiref", "version": "3.8.1"}, "download_info": {"archive_info": {}}},
        {"metadata": {"name": "python_dateutil", "version": "2.9.0.post0"},
         "download_info": {"archive_info": {"hashes": {"sha256": "dddd"}}}},
    ]}
    assert pin_set(pins_from_pip_report(report)) == pin_set(parse_requirements_lock(UV_OUTPUT))
    pins = pins_from_pip_report(report)
    assert [p.hashes for p in pins] == [(), ("sha256:aaaa",), ("sha256:dddd",)], "one hash per chosen file"
    assert parse_requirements_lock(lock_text(pins)) == pins, "the lock's text reads back as the same pins"


@pytest.mark.parametrize("text", ["django>=4\n", "django\n", "==4.2\n"], ids=["range", "bare", "no-name"])
def test_an_entry_that_is_not_pinned_is_an_error_naming_it(text):
    with pytest.raises(ValueError, match="is not of the form name==version"):
        parse_requirements_lock(text)


@pytest.mark.parametrize("name, normal", [("Django", "django"), ("python_dateutil", "python-dateutil"),
                                          ("zope.interface", "zope-interface"), ("A__b-.c", "a-b-c")])
def test_names_are_normalized(name, normal):
    assert normalize_name(name) == normal
