"""Unpacking archives someone else made (corral.untar): the same rules with tarfile's data filter
(Python 3.11.4+) and without it (Debian 12's 3.11.2), on real files."""
import io
import os
import stat
import tarfile

import pytest

from corral import untar

MODES = [False] + ([True] if untar.HAS_DATA_FILTER else [])   # the fallback is checked on every Python


def archive(*members):
    """A tar of ``(TarInfo, bytes or None)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name, kind=tarfile.REGTYPE, mode=0o644, link="", data=None):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info, (data if data is not None else (b"x" if kind == tarfile.REGTYPE else None))


@pytest.mark.parametrize("use_filter", MODES, ids=lambda f: "filter" if f else "fallback")
def test_plain_files_folders_and_inner_links_come_out(tmp_path, use_filter):
    data = archive(member("app", tarfile.DIRTYPE, 0o755), member("app/main.py", data=b"print(1)\n"),
                   member("app/run.sh", mode=0o755, data=b"#!/bin/sh\n"),
                   member("app/latest", tarfile.SYMTYPE, link="main.py"),
                   member("app/copy.py", tarfile.LNKTYPE, link="app/main.py"))
    untar.unpack(data, str(tmp_path / "out"), use_filter=use_filter)
    out = tmp_path / "out" / "app"
    assert (out / "main.py").read_bytes() == b"print(1)\n"
    assert os.readlink(out / "latest") == "main.py" and (out / "latest").read_bytes() == b"print(1)\n"
    assert (out / "copy.py").read_bytes() == b"print(1)\n"
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(out / "main.py").st_uid == os.geteuid(), "owned by whoever unpacks, not the archive's owner"


HOSTILE = {
    "absolute": ([member("/tmp/corral-untar-abs")], "an absolute path"),
    "dotdot": ([member("../escaped")], "a path out of the folder"),
    "symlink-out": ([member("out", tarfile.SYMTYPE, link="../../etc")], "a link out of the folder"),
    "symlink-absolute": ([member("passwd", tarfile.SYMTYPE, link="/etc/passwd")], "a link to an absolute path"),
    "hardlink-out": ([member("shadow", tarfile.LNKTYPE, link="../outside")], "a link out of the folder"),
    "through-a-link": ([member("up", tarfile.SYMTYPE, link="."), member("up/../../escaped")],
                       "a path out of the folder"),
    "device": ([member("null", tarfile.CHRTYPE)], "a device, FIFO or other special file"),
    "fifo": ([member("pipe", tarfile.FIFOTYPE)], "a device, FIFO or other special file"),
}


@pytest.mark.parametrize("use_filter", MODES, ids=lambda f: "filter" if f else "fallback")
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_member_that_leaves_the_folder_or_is_special_refuses_the_archive(tmp_path, case, use_filter):
    members, why = HOSTILE[case]
    dest = tmp_path / "deep" / "out"
    with pytest.raises(untar.UnsafeArchive) as caught:
        untar.unpack(archive(*members), str(dest), use_filter=use_filter)
    assert str(caught.value).endswith(f": {why}") and str(caught.value).startswith("archive member ")
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not os.path.exists("/tmp/corral-untar-abs")


@pytest.mark.parametrize("use_filter", MODES, ids=lambda f: "filter" if f else "fallback")
def test_set_id_bits_and_write_for_others_are_dropped(tmp_path, use_filter):
    untar.unpack(archive(member("su", mode=0o6777), member("shared.txt", mode=0o666)), str(tmp_path),
                 use_filter=use_filter)
    su = os.stat(tmp_path / "su").st_mode
    assert not su & (stat.S_ISUID | stat.S_ISGID) and not su & (stat.S_IWGRP | stat.S_IWOTH)
    assert os.stat(tmp_path / "shared.txt").st_mode & 0o777 == 0o644


@pytest.mark.parametrize("use_filter", MODES, ids=lambda f: "filter" if f else "fallback")
def test_a_folder_without_permissions_still_takes_its_files(tmp_path, use_filter):
    untar.unpack(archive(member("locked", tarfile.DIRTYPE, 0o000), member("locked/a.txt")), str(tmp_path),
                 use_filter=use_filter)
    assert (tmp_path / "locked" / "a.txt").read_bytes() == b"x"
