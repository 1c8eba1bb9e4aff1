"""The tar stream scanner an agent runs over each layer download: what it releases to tar, and what it refuses."""
import io
import tarfile

import pytest

from nodeagent.tarscan import TarScan
from tests.support import tar_bytes as archive

CODE = archive([("main.py", "file", "print('hi')\n")])


def test_tar_is_handed_no_byte_of_a_member_before_its_header_passed():
    bad = archive([("ok.py", "file", "a" * 700), ("link", "symlink", "/etc"), ("link/evil", "file", "x")])
    bad_at = [m.offset for m in tarfile.open(fileobj=io.BytesIO(bad))][2]
    scan, released = TarScan(), 0
    with pytest.raises(ValueError, match="'link/evil' would be written through a symbolic link"):
        for i in range(len(bad)):
            released = scan.feed(bad[i:i + 1])
    assert 0 < released <= bad_at


def test_a_hard_link_through_a_symlink_is_refused():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
        hard = tarfile.TarInfo("passwd")
        hard.type, hard.linkname = tarfile.LNKTYPE, "etc/passwd"
        tar.addfile(hard)
    with pytest.raises(ValueError, match="'passwd' links to a file through a symbolic link"):
        TarScan().feed(buf.getvalue())


def test_a_pax_path_escaping_the_layer_is_refused_though_its_ustar_name_is_harmless():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("harmless")
        info.pax_headers = {"path": "../../" + "e" * 120}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="points outside the layer folder"):
        TarScan().feed(buf.getvalue())


def test_a_header_with_a_bad_checksum_is_refused():
    data = bytearray(CODE)
    data[0] ^= 0x01
    with pytest.raises(ValueError, match="bad checksum"):
        TarScan().feed(bytes(data))


def test_a_header_summed_with_signed_bytes_is_accepted_and_a_wrong_one_is_not():
    """Old tars computed the checksum over signed chars: a name byte over 127 counts 256 less."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        tar.addfile(tarfile.TarInfo("caf\xe9.txt"), io.BytesIO(b""))
    data = bytearray(buf.getvalue())
    header = data[:148] + b" " * 8 + data[156:512]
    signed = sum(b - 256 if b > 127 else b for b in header)
    assert signed != sum(header)
    data[148:156] = b"%06o\x00 " % signed
    scan = TarScan()
    assert scan.feed(bytes(data)) > 512 and scan.complete()
    data[148:156] = b"%06o\x00 " % (signed - 1)
    with pytest.raises(ValueError, match="bad checksum"):
        TarScan().feed(bytes(data))
