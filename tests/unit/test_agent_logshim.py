"""The capture process's pure parts (line framing, stamps, rotation order, exit phrases) and its
log file against a device that is always full."""
import errno
import os
import re
import signal

import pytest

from nodeagent import logshim
from nodeagent.logshim import Framer, LogFile, how_it_ended, log_line, rotation_renames, stamp, utf8_cut

LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (out|err|sys) .*\n$")


def test_stamp_is_rfc3339_utc_with_microseconds():
    assert stamp(1_795_000_838_123_456_789) == "2026-11-18T11:20:38.123456Z"
    assert stamp(0) == "1970-01-01T00:00:00.000000Z"


def test_a_log_line_replaces_bytes_that_are_not_utf8():
    line = log_line(0, "err", b"caf\xc3\xa9 \xff")
    assert LINE.match(line) and line.endswith(" err café \ufffd\n".encode())


@pytest.mark.parametrize("chunks, lines, pending", [
    ([b"a\nb\n"], [b"a", b"b"], b""),
    ([b"par", b"tial\nnext"], [b"partial"], b"next"),
    ([b"\n\n"], [b"", b""], b""),
    ([b"x" * 10 + b"\n"], [b"x" * 8, b"xx"], b""),
    ([b"y" * 20], [b"y" * 8, b"y" * 8], b"yyyy"),
], ids=["two whole", "split across reads", "empty lines", "long line cut", "long partial cut"])
def test_framer_cuts_lines_and_keeps_the_partial(chunks, lines, pending):
    framer, out = Framer(limit=8), []
    for chunk in chunks:
        out += framer.feed(chunk)
    assert (out, framer.buf) == (lines, pending)
    assert framer.flush() == ([pending] if pending else []) and framer.buf == b""


def test_a_long_line_is_never_cut_inside_a_utf8_character():
    data = "é".encode() * 10   # 2 bytes each
    assert utf8_cut(data, 7) == 6 and utf8_cut(data, 8) == 8 and utf8_cut(b"abc", 8) == 3
    framer = Framer(limit=7)
    parts = framer.feed(data + b"\n")
    assert all(len(p) <= 7 for p in parts) and b"".join(parts).decode() == "é" * 10


def test_rotation_shifts_oldest_first_and_deletes_the_last():
    assert rotation_renames("d", 3) == [("d/output.log.2", None), ("d/output.log.1", "d/output.log.2"),
                                        ("d/output.log", "d/output.log.1")]
    assert rotation_renames("d", 1) == [("d/output.log", None)]


@pytest.mark.parametrize("status, phrase", [
    (3 << 8, "with code 3"), (0, "with code 0"), (signal.SIGKILL, "(killed by SIGKILL)"),
])
def test_how_a_run_ended(status, phrase):
    assert how_it_ended(status) == phrase


def test_rotation_keeps_whole_lines_and_at_most_keep_files(tmp_path):
    log = LogFile(str(tmp_path), max_bytes=200, keep=3)
    for n in range(30):
        assert log.write([("out", f"line {n}".encode())], 0)
    names = sorted(os.listdir(tmp_path))
    assert names == ["output.log", "output.log.1", "output.log.2"]
    texts = []
    for name in ("output.log.2", "output.log.1", "output.log"):
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 200 and data.endswith(b"\n")
        texts += [line.split(b" ", 2)[2] for line in data.splitlines()]
    numbers = [int(t.split()[1]) for t in texts]
    assert numbers == list(range(numbers[0], 30)), "the newest lines, in order, none lost between files"


def test_a_full_disk_drops_lines_and_counts_them_once_it_can_write(tmp_path, monkeypatch):
    # The capture process is never green; when an earlier test module patched this
    # process, eventlet's os.write would register /dev/full with the hub and leave a
    # stale listener on its fd number after close, breaking a later subprocess.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eventlet.patcher import original
    real_write, full = original("os").write, [True]

    def write(fd, data):   # the disk is full until it is not (a symlink to /dev/full is never followed now)
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    log = LogFile(str(tmp_path), max_bytes=1 << 20, keep=2)
    assert not log.write([("out", b"lost 1"), ("out", b"lost 2")], 0)
    assert not log.write([("err", b"lost 3")], 0)
    full[0] = False
    assert log.write([("out", b"kept")], 0)
    lines = (tmp_path / "output.log").read_bytes().splitlines()
    assert [line.split(b" ", 1)[1] for line in lines] == [
        b"sys 3 lines dropped: the log could not be written", b"out kept"]


def test_what_the_app_planted_at_a_log_name_is_replaced_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("kept\n")
    folder = tmp_path / "logs"
    folder.mkdir()
    os.symlink(outside, folder / "output.log")
    os.mkfifo(folder / "output.log.1")
    os.symlink(outside, folder / ".runs")
    os.symlink(outside, folder / f".runs.tmp-{os.getpid()}")
    log = LogFile(str(folder), max_bytes=120, keep=3)
    for n in range(4):
        assert log.write([("out", f"line {n}".encode())], 0)
    dir_fd = logshim.open_folder(str(folder))
    assert logshim.next_run(dir_fd) == 1 and logshim.next_run(dir_fd) == 2
    assert outside.read_text() == "kept\n"
    assert all(not os.path.islink(folder / n) for n in os.listdir(folder))
    assert (folder / ".runs").read_text() == "2"


def test_uid_and_gid_go_together():
    with pytest.raises(ValueError, match="--uid and --gid go together"):
        logshim.parse_args(["--dir", "/d", "--uid", "999", "--", "true"])
    opts, app = logshim.parse_args(["--dir", "/d", "--uid", "999", "--gid", "998", "--cgroup", "/c/cgroup.procs",
                                    "--", "true"])
    assert (opts["uid"], opts["gid"], opts["cgroup"], app) == (999, 998, ["/c/cgroup.procs"], ["true"])
