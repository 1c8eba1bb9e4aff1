"""The one tar parser of the agent (nodeagent/tarscan.py): what it yields to be written, and what it refuses."""
import io
import subprocess
import tarfile

import pytest

from nodeagent.tarscan import UnsafeLayer, members
from tests.support import tar_bytes as archive

CODE = archive([("main.py", "file", "print('hi')\n")])


def scan(data):
    """Every member of ``data`` as the agent would get them (a list), or the UnsafeLayer raised."""
    return list(members(lambda offset, n: data[offset:offset + n], len(data)))


def tar(*infos, fmt=tarfile.GNU_FORMAT):
    """A tar of ``(TarInfo, data or None)`` pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as out:
        for info, data in infos:
            if data is not None:
                info.size = len(data)
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name, kind=tarfile.REGTYPE, mode=0o644, linkname=""):
    member = tarfile.TarInfo(name)
    member.type, member.mode, member.linkname = kind, mode, linkname
    return member


def patched(data, at, field, value):
    """``data`` with header field ``field`` (a slice of the header at ``at``) set to ``value`` and the
    header's checksum made right again, as an attacker would."""
    out = bytearray(data)
    start, stop = at + field.start, at + field.stop
    assert len(value) == stop - start
    out[start:stop] = value
    out[at + 148:at + 156] = b" " * 8
    out[at + 148:at + 156] = b"%06o\x00 " % sum(out[at:at + 512])
    return bytes(out)


SIZE, MODE, UID, MTIME = slice(124, 136), slice(100, 108), slice(108, 116), slice(136, 148)


def test_a_layer_packed_like_the_builder_packs_yields_every_member_with_its_data(tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "bin" / "tool").chmod(0o755)
    (src / "bin" / "python").symlink_to("/usr/bin/python3")
    (src / "hard").hardlink_to(src / "bin" / "tool")
    data = subprocess.run(["tar", "--create", "--file=-", "--sort=name", "--numeric-owner", "--directory", str(src),
                           "."], check=True, capture_output=True).stdout
    got = scan(data)
    assert [(m.name, m.kind, m.linkname) for m in got] == [
        ("", "dir", ""), ("bin", "dir", ""), ("bin/python", "symlink", "/usr/bin/python3"),
        ("bin/tool", "file", ""), ("hard", "hardlink", "bin/tool")]
    tool = got[3]
    assert data[tool.offset:tool.offset + tool.size] == b"#!/bin/sh\n" and tool.mode == 0o755


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1777, 0o6711])
def test_set_id_and_sticky_bits_are_refused_naming_the_member(mode):
    with pytest.raises(UnsafeLayer, match=f"member 'bin/su' has set-id or sticky bits \\(mode {mode:04o}\\)"):
        scan(tar((info("bin/su", mode=mode), b"x")))


@pytest.mark.parametrize("kind, said", [(tarfile.CHRTYPE, "a character device"), (tarfile.BLKTYPE, "a block device"),
                                        (tarfile.FIFOTYPE, "a FIFO"), (b"Z", "of tar type b'Z'")])
def test_devices_fifos_and_unknown_types_are_refused(kind, said):
    with pytest.raises(UnsafeLayer, match=f"member 'dev/x' is {said}"):
        scan(tar((info("dev/x", kind), None)))


@pytest.mark.parametrize("name, said", [("../evil", "'..' in its name"), ("a/../../evil", "'..' in its name"),
                                        ("/etc/evil", "an absolute name")])
def test_names_out_of_the_layer_are_refused(name, said):
    with pytest.raises(UnsafeLayer, match=f"{said}: it points outside the layer folder"):
        scan(tar((info("ok"), b""), (info(name), b"x")))


def test_nothing_is_yielded_from_the_refused_member_on():
    data = tar((info("ok.py"), b"a" * 700), (info("link", tarfile.SYMTYPE, 0o777, "/etc"), None),
               (info("link/evil"), b"x"), (info("after"), b"y"))
    got = []
    with pytest.raises(UnsafeLayer, match="'link/evil' would be written through the symbolic link 'link'"):
        for member in members(lambda offset, n: data[offset:offset + n], len(data)):
            got.append(member.name)
    assert got == ["ok.py", "link"]


def test_an_absolute_symlink_target_is_kept_but_nothing_goes_under_a_file_either():
    assert scan(tar((info("bin/python", tarfile.SYMTYPE, 0o777, "/usr/bin/python3.11"), None)))[0].linkname == \
        "/usr/bin/python3.11"
    with pytest.raises(UnsafeLayer, match="'f/x' would be written under 'f', which is not a folder"):
        scan(tar((info("f"), b"1"), (info("f/x"), b"2")))


@pytest.mark.parametrize("target, why", [
    ("/etc/passwd", "absolute"), ("../x", "dot-dot"), ("later", "a later member"), ("nowhere", "no member"),
    ("link", "a symlink"), ("folder", "a folder"), ("link/passwd", "through a symlink")])
def test_a_hard_link_only_to_an_earlier_file_of_the_layer(target, why):
    data = tar((info("folder", tarfile.DIRTYPE, 0o755), None), (info("link", tarfile.SYMTYPE, 0o777, "/etc"), None),
               (info("hard", tarfile.LNKTYPE, linkname=target), None), (info("later"), b"x"))
    with pytest.raises(UnsafeLayer, match=f"member 'hard' is a hard link to '{target}', which is not an earlier file"):
        scan(data)
    ok = scan(tar((info("./a"), b"x"), (info("./b", tarfile.LNKTYPE, linkname="./a"), None)))
    assert [(m.name, m.linkname) for m in ok] == [("a", ""), ("b", "a")]


def test_a_name_twice_is_refused_but_a_folder_may_be_named_again():
    with pytest.raises(UnsafeLayer, match="member 'a' names 'a' a second time"):
        scan(tar((info("a"), b"x"), (info("a"), b"y")))
    assert [m.name for m in scan(tar((info("d/f"), b"x"), (info("d", tarfile.DIRTYPE, 0o755), None)))] == ["d/f", "d"]


@pytest.mark.parametrize("field, value", [
    (SIZE, b"0000001_000\x00"), (SIZE, b"0000001 000\x00"), (SIZE, b"+0000001000\x00"), (SIZE, b" 00000001000"),
    (SIZE, b"00000001000x"), (SIZE, b"0000000100\x009"), (SIZE, b"00000001008\x00"), (SIZE, b"\x00" * 12),
    (MODE, b"000_644\x00"), (MODE, b"-000644\x00"), (UID, b"00 0000\x00"), (MTIME, b"1530416735_\x00"),
    (SIZE, b"\xff" * 12)])
def test_numeric_fields_that_are_not_strict_octal_are_refused(field, value):
    good = tar((info("x"), b"a" * 512))
    with pytest.raises(UnsafeLayer, match="member 'x': its .* field .* (is not a strict octal number|base-256)"):
        scan(patched(good, 0, field, value))


def test_lenient_fields_of_writers_that_mean_the_same_are_read():
    """Trailing spaces for NULs, an all-NUL uid (as GNU tar leaves device numbers), base-256 sizes."""
    good = tar((info("x"), b"a" * 512))
    assert scan(patched(good, 0, SIZE, b"00000001000 "))[0].size == 512
    assert scan(patched(good, 0, UID, b"\x00" * 8))[0].size == 512
    assert scan(patched(good, 0, SIZE, b"\x80" + (512).to_bytes(11, "big")))[0].size == 512


def test_a_header_with_a_bad_checksum_or_no_magic_is_refused():
    data = bytearray(CODE)
    data[0] ^= 0x01
    with pytest.raises(UnsafeLayer, match="bad checksum"):
        scan(bytes(data))
    with pytest.raises(UnsafeLayer, match="neither ustar nor GNU tar"):
        scan(patched(CODE, 0, slice(257, 265), b"\x00" * 8))


def test_a_header_summed_with_signed_bytes_is_accepted_and_a_wrong_one_is_not():
    """Old tars computed the checksum over signed chars: a name byte over 127 counts 256 less."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as out:
        out.addfile(tarfile.TarInfo("caf\xe9.txt"), io.BytesIO(b""))
    data = bytearray(buf.getvalue())
    header = data[:148] + b" " * 8 + data[156:512]
    signed = sum(b - 256 if b > 127 else b for b in header)
    assert signed != sum(header)
    data[148:156] = b"%06o\x00 " % signed
    assert len(scan(bytes(data))) == 1
    data[148:156] = b"%06o\x00 " % (signed - 1)
    with pytest.raises(UnsafeLayer, match="bad checksum"):
        scan(bytes(data))


def test_pax_records_are_strict_and_their_path_is_checked_like_a_name():
    escaping = info("harmless")
    escaping.pax_headers = {"path": "../../" + "e" * 120}
    with pytest.raises(UnsafeLayer, match="points outside the layer folder"):
        scan(tar((escaping, b""), fmt=tarfile.PAX_FORMAT))
    sized = info("x")
    sized.pax_headers = {"comment": "cc"}
    data = tar((sized, b"abc"), fmt=tarfile.PAX_FORMAT)
    lenient = data.replace(b"14 comment=cc\n", b"1_4 comment=c\n")   # int("1_4") == 14: the same length
    assert lenient != data
    with pytest.raises(UnsafeLayer, match="record length '1_4' is not a decimal number"):
        scan(lenient)
    sparse = info("s")
    sparse.pax_headers = {"GNU.sparse.size": "10"}
    with pytest.raises(UnsafeLayer, match="member 's' is a GNU sparse file"):
        scan(tar((sparse, b""), fmt=tarfile.PAX_FORMAT))


@pytest.mark.parametrize("cut, said", [
    (lambda d: d[:1024], "ends inside the member 'main.py'"),
    (lambda d: d[:512 + 512 * 4], "ends without its end-of-archive marker"),
    (lambda d: d[:512 * 6], "ends without its end-of-archive marker"),
    (lambda d: d + b"\x01", "data after its end-of-archive marker"),
    (lambda d: d[:-512] + b"junk" + b"\x00" * 508, "data after its end-of-archive marker")])
def test_truncation_and_data_after_the_end_are_refused(cut, said):
    data = archive([("main.py", "file", "x" * 2000)])
    assert len(scan(data)) == 1
    with pytest.raises(UnsafeLayer, match=said):
        scan(cut(data))
