"""Image archives: contents relative to the image folder, symlinks kept, marker left out."""
import hashlib
import os
import tarfile

from builder.artifacts import artifact_path, pack_image, sha256_file
from corral.images import IMAGE_MARKER


def make_image_folder(root):
    folder = root / "img"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "main.py").write_text("print('hi')\n")
    (folder / "venv" / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/python3", folder / "venv" / "bin" / "python")
    (folder / IMAGE_MARKER).write_text("{}")
    return folder


def test_pack_writes_the_archive_and_returns_its_sha256(tmp_path):
    folder = make_image_folder(tmp_path)
    dest = artifact_path(str(tmp_path / "cache"), "ab" * 32)
    sha = pack_image(str(folder), dest)
    assert sha == hashlib.sha256(open(dest, "rb").read()).hexdigest() == sha256_file(dest)
    assert os.listdir(os.path.dirname(dest)) == [os.path.basename(dest)]  # no temp file left


def test_archive_holds_app_and_venv_but_not_the_marker(tmp_path):
    folder = make_image_folder(tmp_path)
    dest = str(tmp_path / "a.tar.gz")
    pack_image(str(folder), dest)
    with tarfile.open(dest) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"app", "app/main.py", "venv", "venv/bin", "venv/bin/python"}
    assert members["venv/bin/python"].issym()
    assert members["venv/bin/python"].linkname == "/usr/bin/python3"


def test_archive_path_is_under_artifacts():
    assert artifact_path("/c", "ab" * 32) == "/c/artifacts/" + "ab" * 32 + ".tar.gz"
