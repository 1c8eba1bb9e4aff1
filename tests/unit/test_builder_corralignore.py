"""`.corralignore`: what a source folder's ignore file leaves out of its archive."""
import io
import os
import tarfile
import gzip

import pytest

from corral.source import ignore_patterns, is_ignored, pack_source


@pytest.mark.parametrize("rel, is_dir, patterns, expected", [
    ("debug.log", False, ["*.log"], True),
    ("deep/down/debug.log", False, ["*.log"], True),
    ("docs/build", True, ["docs/build"], True),
    ("other/docs/build", True, ["docs/build"], False),
    ("build", True, ["/build"], True),
    ("src/build", True, ["/build"], False),
    ("data", False, ["data/"], False),
    ("data", True, ["data/"], True),
    ("app.py", False, ["*.log", "data/"], False),
], ids=["name", "name-at-depth", "path", "path-elsewhere", "anchored", "anchored-elsewhere",
        "dir-only-file", "dir-only-dir", "no-match"])
def test_patterns_match_like_gitignores_common_subset(rel, is_dir, patterns, expected):
    assert is_ignored(rel, is_dir, patterns) is expected


def test_comments_and_blank_lines_are_not_patterns():
    assert ignore_patterns("# secrets\n\n  *.key  \nlogs/\n") == ["*.key", "logs/"]


def test_packing_leaves_out_what_the_ignore_file_lists(tmp_path):
    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    (src / "logs" / "a.txt").write_text("x")
    (src / "app.py").write_text("print(1)\n")
    (src / "secret.key").write_text("k")
    (src / ".corralignore").write_text("# not shipped\n*.key\nlogs/\n")
    _, data = pack_source(str(src))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        assert sorted(tar.getnames()) == [".corralignore", "app.py"]


def test_an_ignored_file_changing_does_not_change_the_digest(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print(1)\n")
    (src / ".corralignore").write_text("*.log\n")
    (src / "run.log").write_text("one")
    before = pack_source(str(src))[0]
    (src / "run.log").write_text("two")
    assert pack_source(str(src))[0] == before
    assert os.path.exists(src / "run.log")
