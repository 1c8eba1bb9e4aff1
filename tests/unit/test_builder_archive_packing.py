"""Layer archives: an uncompressed tar of the layer's contents, symlinks kept, hashed as written."""
import hashlib
import os
import tarfile

from builder.archives import Packing, archive_path, pack_layer, sha256_file


def make_env_layer(root):
    folder = root / "layer"
    (folder / "bin").mkdir(parents=True)
    (folder / "lib").mkdir()
    (folder / "lib" / "mod.py").write_text("X = 1\n")
    (folder / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    os.chmod(folder / "bin" / "tool", 0o755)
    os.symlink("/usr/bin/python3", folder / "bin" / "python")
    return folder


def test_pack_writes_the_archive_and_returns_its_sha256_and_size(tmp_path):
    folder = make_env_layer(tmp_path)
    dest = archive_path(str(tmp_path / "cache"), "env", "ab" * 32)
    sha, size = pack_layer(str(folder), dest)
    data = open(dest, "rb").read()
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert sha == sha256_file(dest)
    assert os.listdir(os.path.dirname(dest)) == [os.path.basename(dest)]  # no temp file left


def test_archive_holds_the_layer_relative_with_links_and_modes(tmp_path):
    folder = make_env_layer(tmp_path)
    dest = str(tmp_path / "a.tar")
    pack_layer(str(folder), dest)
    with tarfile.open(dest) as tar:
        members = {os.path.normpath(m.name): m for m in tar.getmembers()}
    assert set(members) == {".", "bin", "lib", "lib/mod.py", "bin/tool", "bin/python"}
    assert members["bin/python"].issym() and members["bin/python"].linkname == "/usr/bin/python3"
    assert members["bin/tool"].mode & 0o111


def test_packing_the_same_folder_twice_gives_the_same_bytes(tmp_path):
    folder = make_env_layer(tmp_path)
    first = pack_layer(str(folder), str(tmp_path / "1.tar"))
    assert pack_layer(str(folder), str(tmp_path / "2.tar")) == first


def test_a_missing_folder_is_an_error_naming_it_and_leaves_no_file(tmp_path):
    dest = str(tmp_path / "out" / "a.tar")
    try:
        pack_layer(str(tmp_path / "nope"), dest)
    except OSError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("packing a missing folder must fail")
    assert os.listdir(tmp_path / "out") == []


def test_archive_path_names_the_kind():
    assert archive_path("/c", "code", "ab" * 32) == "/c/artifacts/code-" + "ab" * 32 + ".tar"


def test_a_background_pack_is_named_only_when_committed(tmp_path):
    folder = make_env_layer(tmp_path)
    out = tmp_path / "artifacts"
    packing = Packing(str(folder), str(out))
    sha, size = packing.wait()
    dest = str(out / "env-x.tar")
    packing.commit(dest)
    packing.discard()
    assert os.listdir(out) == ["env-x.tar"] and (sha, size) == (sha256_file(dest), os.path.getsize(dest))


def test_a_discarded_pack_leaves_no_file(tmp_path):
    folder = make_env_layer(tmp_path)
    packing = Packing(str(folder), str(tmp_path / "artifacts"))
    packing.discard()
    assert os.listdir(tmp_path / "artifacts") == []


def test_the_archive_ends_within_one_default_tar_record_of_its_end_marker(tmp_path):
    """tar -x stops reading at the end-of-archive blocks: padding past them must stay small
    (a 128 KiB record hung an agent's streaming unpack)."""
    folder = make_env_layer(tmp_path)
    dest = str(tmp_path / "a.tar")
    _, size = pack_layer(str(folder), dest)
    with tarfile.open(dest) as tar:
        end = max(m.offset_data + (m.size + 511) // 512 * 512 for m in tar.getmembers())
    assert size % 10240 == 0 and size - end <= 10240
