"""Source archives: deterministic, content-addressed, and safe to unpack."""
import gzip
import hashlib
import io
import os
import tarfile

import pytest

from corral import source
from corral.source import pack_source, unpack_source


@pytest.fixture
def app(tmp_path):
    """A small source folder with a subfolder, an executable and a link inside it."""
    root = tmp_path / "app"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('hello')\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "run.sh").write_text("#!/bin/sh\nexec python app.py\n")
    os.chmod(root / "run.sh", 0o700)
    os.symlink("app.py", root / "main.py")
    return root


def members(data):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_same_folder_packs_to_the_same_bytes(app, tmp_path):
    first = pack_source(str(app))
    os.utime(app / "app.py", (1, 1))
    os.chmod(app / "pkg" / "__init__.py", 0o600)  # not executable either way: still 0o644
    assert pack_source(str(app)) == first


def test_a_copy_elsewhere_packs_to_the_same_digest(app, tmp_path):
    digest, data = pack_source(str(app))
    unpack_source(data, str(tmp_path / "copy"), digest)
    assert pack_source(str(tmp_path / "copy"))[0] == digest


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "app.py").write_text("print('bye')\n"),
        lambda root: (root / "app.py").rename(root / "main2.py"),
        lambda root: os.chmod(root / "app.py", 0o755),
        lambda root: (root / "empty").mkdir(),
        lambda root: (root / "main.py").unlink() or os.symlink("run.sh", root / "main.py"),
    ],
    ids=["content", "name", "mode", "new-folder", "link-target"],
)
def test_any_change_gives_another_digest(app, change):
    before, _ = pack_source(str(app))
    change(app)
    assert pack_source(str(app))[0] != before


def test_entries_are_sorted_and_normalized(app):
    digest, data = pack_source(str(app))
    raw = gzip.decompress(data)
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    found = members(data)
    assert list(found) == ["app.py", "main.py", "pkg", "pkg/__init__.py", "run.sh"]
    assert {name: oct(m.mode) for name, m in found.items() if not m.issym()} == {
        "app.py": "0o644", "pkg": "0o755", "pkg/__init__.py": "0o644", "run.sh": "0o755"}
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in found.values())
    assert found["main.py"].issym() and found["main.py"].linkname == "app.py"
    assert data[4:8] == b"\0\0\0\0", "the gzip header must carry mtime 0"


def test_clutter_is_left_out(app):
    for folder in (".git", "__pycache__", ".venv", "venv", "node_modules", "pkg/__pycache__"):
        (app / folder).mkdir()
        (app / folder / "x").write_text("x")
    (app / "pkg" / "mod.pyc").write_bytes(b"\0")
    assert list(members(pack_source(str(app))[1])) == ["app.py", "main.py", "pkg", "pkg/__init__.py", "run.sh"]


def test_unpack_restores_files_modes_and_links(app, tmp_path):
    digest, data = pack_source(str(app))
    dest = tmp_path / "out" / "app"
    unpack_source(data, str(dest), digest)
    assert (dest / "app.py").read_text() == "print('hello')\n"
    assert os.access(dest / "run.sh", os.X_OK)
    assert os.readlink(dest / "main.py") == "app.py"
    assert (dest / "pkg" / "__init__.py").exists()


def test_an_absolute_link_inside_the_folder_is_stored_relative(app, tmp_path):
    os.symlink(str(app / "pkg" / "__init__.py"), app / "init.py")
    digest, data = pack_source(str(app))
    assert members(data)["init.py"].linkname == "pkg/__init__.py"
    unpack_source(data, str(tmp_path / "out"), digest)
    assert (tmp_path / "out" / "init.py").read_text() == ""


def test_a_link_out_of_the_folder_is_refused(app, tmp_path):
    (tmp_path / "secret").write_text("s")
    os.symlink("../../secret", app / "pkg" / "leak")
    with pytest.raises(ValueError, match="source symlink 'pkg/leak' points outside the source folder"):
        pack_source(str(app))


def test_a_link_that_only_looks_outside_stays(app):
    os.symlink("../run.sh", app / "pkg" / "run")
    assert members(pack_source(str(app))[1])["pkg/run"].linkname == "../run.sh"


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        pack_source(str(tmp_path / "nope"))


def test_a_fifo_is_refused(app):
    os.mkfifo(app / "pipe")
    with pytest.raises(ValueError, match="source entry 'pipe' .* is not a file, folder or symlink"):
        pack_source(str(app))


def test_a_source_over_the_limit_is_refused(app, monkeypatch):
    monkeypatch.setattr(source, "MAX_SOURCE_BYTES", 1000)
    (app / "data.bin").write_bytes(b"x" * 1001)
    with pytest.raises(ValueError, match="over the 100 MiB limit|the limit for a source"):
        pack_source(str(app))


def test_a_digest_mismatch_writes_nothing(app, tmp_path):
    _, data = pack_source(str(app))
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match="source archive digest is sha256:[0-9a-f]{64}, expected sha256:0+"):
        unpack_source(data, str(dest), "sha256:" + "0" * 64)
    assert not dest.exists()


def test_a_gzip_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "MAX_SOURCE_BYTES", 1 << 16)
    bomb = gzip.compress(b"\0" * (1 << 20))
    with pytest.raises(ValueError, match="unpacks to over"):
        unpack_source(bomb, str(tmp_path / "out"), "sha256:" + "0" * 64)


def test_not_gzip_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not valid gzip"):
        unpack_source(b"plain bytes", str(tmp_path / "out"), "sha256:" + "0" * 64)


def test_a_hostile_archive_is_not_extracted_outside_dest(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    raw = buffer.getvalue()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    with pytest.raises(ValueError, match=r"^archive member '\.\./escaped\.txt': a path out of the folder$"):
        unpack_source(gzip.compress(raw), str(tmp_path / "out"), digest)
    assert not (tmp_path / "escaped.txt").exists()
