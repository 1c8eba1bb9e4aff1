"""Reading instance logs written to the contract: lines, tail, since, previous run, rotation, merge."""
import os

import pytest

from nodeagent import logs
from nodeagent.logs import Line, Snapshot, merge, parse_line, select

IID = "app-web-1a2b"


def ts(second, micro=0):
    return f"2026-11-26T15:20:{second:02d}.{micro:06d}Z"


def write(folder, name, lines, mode="w"):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), mode, encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path / "logs" / IID)


@pytest.mark.parametrize("raw, expected", [
    (f"{ts(38, 123456)} out hello world\n", Line(ts(38, 123456), "out", "hello world")),
    (f"{ts(38)} err ", Line(ts(38), "err", "")),
    (f"{ts(38)} sys run 2 started pid 7", Line(ts(38), "sys", "run 2 started pid 7")),
    ("a plain line without a stamp", Line(None, "out", "a plain line without a stamp")),
    (f"{ts(38)} bad stream", Line(None, "out", f"{ts(38)} bad stream")),
], ids=["out", "empty-text", "sys", "legacy", "unknown-stream"])
def test_parse_line(raw, expected):
    assert parse_line(raw) == expected
    assert parse_line(expected.raw()) == expected


def test_format_ts_is_the_contract_stamp_and_sorts_as_text():
    assert logs.format_ts(0) == "1970-01-01T00:00:00.000000Z"
    assert logs.format_ts(1.5) < logs.format_ts(10.25) < logs.format_ts(100)
    assert parse_line(logs.format_ts(1795000000.123456) + " out x").ts == logs.format_ts(1795000000.123456)


def test_rotated_files_are_read_oldest_first(tmp_path, folder):
    write(folder, "output.log.2", [f"{ts(1)} out a"])
    write(folder, "output.log.1", [f"{ts(2)} out b"])
    write(folder, "output.log", [f"{ts(3)} out c"])
    write(folder, "output.log.tmp", [f"{ts(4)} out not a rotation"])
    snap = Snapshot(str(tmp_path), IID)
    assert [parse_line(r).text for r in snap.lines()] == ["a", "b", "c"]
    snap.close()


def test_legacy_single_file_is_read_when_there_is_no_folder(tmp_path):
    os.makedirs(tmp_path / "logs")
    (tmp_path / "logs" / f"{IID}.log").write_text("one\ntwo\n")
    snap = Snapshot(str(tmp_path), IID)
    assert [parse_line(r) for r in snap.lines()] == [Line(None, "out", "one"), Line(None, "out", "two")]
    snap.close()


def test_no_log_at_all(tmp_path):
    snap = Snapshot(str(tmp_path), IID)
    assert not snap.exists and list(snap.lines()) == []


@pytest.mark.parametrize("tail, since, expected", [
    (None, None, ["a", "b", "c", "d"]),
    (2, None, ["c", "d"]),
    (0, None, []),
    (10, None, ["a", "b", "c", "d"]),
    (None, ts(3), ["c", "d"]),
    (1, ts(2), ["d"]),
    (None, ts(9), []),
], ids=["all", "tail-2", "tail-0", "tail-more-than-all", "since", "since-and-tail", "since-future"])
def test_select_tail_and_since(tail, since, expected):
    raw = [f"{ts(i + 1)} out {c}" for i, c in enumerate("abcd")]
    assert [parse_line(r).text for r in select(raw, tail=tail, since=since)] == expected


CRASHED = [
    f"{ts(1)} sys run 1 started pid 10", f"{ts(2)} out serving", f"{ts(3)} sys run 1 exited with code 0",
    f"{ts(4)} sys run 2 started pid 11", f"{ts(5)} err Traceback (most recent call last):",
    f"{ts(6)} err RuntimeError: boom", f"{ts(7)} sys run 2 exited with code 1",
    f"{ts(8)} sys run 3 started pid 12", f"{ts(9)} out serving again",
]


def test_previous_is_the_run_before_the_latest_start():
    got = [parse_line(r).text for r in select(lambda: iter(CRASHED), previous=True)]
    assert got == ["run 2 started pid 11", "Traceback (most recent call last):", "RuntimeError: boom",
                   "run 2 exited with code 1"]
    assert [parse_line(r).text for r in select(lambda: iter(CRASHED), previous=True, tail=1)] == \
        ["run 2 exited with code 1"]


def test_previous_of_a_first_run_is_empty():
    assert list(select(lambda: iter(CRASHED[:3]), previous=True)) == []


def test_previous_across_rotated_files(tmp_path, folder):
    write(folder, "output.log.1", CRASHED[:5])
    write(folder, "output.log", CRASHED[5:])
    snap = Snapshot(str(tmp_path), IID)
    got = [parse_line(r).text for r in select(snap.lines, previous=True)]
    snap.close()
    assert got[0] == "run 2 started pid 11" and got[-1] == "run 2 exited with code 1" and len(got) == 4


def test_follower_continues_after_the_snapshot_and_across_a_rotation(tmp_path, folder):
    write(folder, "output.log", [f"{ts(1)} out before"])
    snap = Snapshot(str(tmp_path), IID)
    assert [parse_line(r).text for r in snap.lines()] == ["before"]
    follower = snap.follower()
    assert follower.poll() == []
    write(folder, "output.log", [f"{ts(2)} out after"], mode="a")
    assert [parse_line(r).text for r in follower.poll()] == ["after"]
    # the capturer writes a last line, renames, and starts a new file
    write(folder, "output.log", [f"{ts(3)} out last of the old file"], mode="a")
    os.rename(os.path.join(folder, "output.log"), os.path.join(folder, "output.log.1"))
    write(folder, "output.log", [f"{ts(4)} out first of the new file"])
    got = []
    for _ in range(3):
        got += [parse_line(r).text for r in follower.poll()]
    assert got == ["last of the old file", "first of the new file"]
    follower.close()


def test_follower_holds_back_a_torn_line_until_its_newline(tmp_path, folder):
    write(folder, "output.log", [])
    follower = Snapshot(str(tmp_path), IID).follower()
    with open(os.path.join(folder, "output.log"), "a") as f:
        f.write(f"{ts(1)} out hal")
    assert follower.poll() == []
    with open(os.path.join(folder, "output.log"), "a") as f:
        f.write("f a line\n")
    assert [parse_line(r).text for r in follower.poll()] == ["half a line"]


def test_follower_waits_for_a_log_that_does_not_exist_yet(tmp_path, folder):
    follower = Snapshot(str(tmp_path), IID).follower()
    assert follower.poll() == []
    write(folder, "output.log", [f"{ts(1)} out born"])
    assert [parse_line(r).text for r in follower.poll()] == ["born"]


def test_follower_reads_at_most_about_the_limit_per_poll(tmp_path, folder):
    write(folder, "output.log", [])
    follower = Snapshot(str(tmp_path), IID).follower()
    write(folder, "output.log", [f"{ts(1)} out " + "x" * 100] * 100, mode="a")
    first = follower.poll(limit=1000)
    assert 0 < len(first) < 100
    rest = []
    while len(first) + len(rest) < 100:
        more = follower.poll(limit=1000)
        assert more, "the follower stopped before the end of the file"
        rest += more
    assert len(first) + len(rest) == 100


def test_invalid_utf8_is_replaced_not_fatal():
    lines, rest = logs.split_lines(b"ok\n\xff\xfe bad\npartial")
    assert lines == ["ok", "\ufffd\ufffd bad"] and rest == b"partial"


def test_merge_orders_instances_by_time_and_keeps_unstamped_lines_in_place():
    a = [Line(ts(1), "out", "a1"), Line(None, "out", "a1-cont"), Line(ts(4), "out", "a4")]
    b = [Line(ts(2), "out", "b2"), Line(ts(3), "err", "b3")]
    got = [(k, line.text) for k, line in merge([("a", a), ("b", b)])]
    assert got == [("a", "a1"), ("a", "a1-cont"), ("b", "b2"), ("b", "b3"), ("a", "a4")]


# -- blocks of bytes: what `corral logs` streams, with no work per line ------------------------------

FILES = {"output.log.2": ["a1", "a2"], "output.log.1": ["b1"], "output.log": ["c1", "c2", "c3"]}
EVERY = ["a1", "a2", "b1", "c1", "c2", "c3"]


@pytest.mark.parametrize("tail, expected", [
    (None, EVERY), (0, []), (1, ["c3"]), (3, ["c1", "c2", "c3"]), (4, ["b1", "c1", "c2", "c3"]),
    (5, EVERY[1:]), (6, EVERY), (1_000_000, EVERY),
], ids=["all", "none", "last", "current-file", "into-the-previous", "inside-the-oldest", "exactly-all", "more"])
def test_blocks_give_the_last_lines_across_rotated_files(tmp_path, folder, tail, expected):
    for name, lines in FILES.items():
        write(folder, name, lines)
    snap = Snapshot(str(tmp_path), IID)
    got = b"".join(snap.blocks(tail=tail, size=4))
    snap.close()
    assert got.decode().split("\n")[:-1] == expected


def test_blocks_cut_only_at_newlines_and_end_a_torn_last_line(tmp_path, folder):
    os.makedirs(folder)
    with open(os.path.join(folder, "output.log"), "wb") as f:
        f.write(b"one\ntwo\nthree without end")
    snap = Snapshot(str(tmp_path), IID)
    blocks = list(snap.blocks(size=5))
    assert all(b.endswith(b"\n") for b in blocks)
    assert b"".join(blocks) == b"one\ntwo\nthree without end\n"
    assert b"".join(Snapshot(str(tmp_path), IID).blocks(tail=1)) == b"three without end\n"


def test_a_line_longer_than_max_line_is_given_in_pieces_not_held():
    whole, rest = logs.cut_lines(b"ok\n" + b"y" * (logs.MAX_LINE * 2 + 5))
    assert whole == b"ok\n" + (b"y" * logs.MAX_LINE + b"\n") * 2 and rest == b"y" * 5


@pytest.mark.parametrize("timestamps, head, expected", [
    (False, "", "hello\n two\nplain\n\n"),
    (True, "", f"{ts(1)} hello\n{ts(2)}  two\nplain\n{ts(3)} \n"),
    (False, "i | ", "i | hello\ni |  two\ni | plain\ni | \n"),
], ids=["text", "timestamps", "prefixed"])
def test_app_text_is_what_corral_logs_prints(timestamps, head, expected):
    block = f"{ts(1)} out hello\n{ts(2)} err  two\nplain\n{ts(3)} out \n"
    assert not logs.has_note(block.encode())
    assert logs.app_text(block.encode(), timestamps, head.encode()) == expected.encode()
    if not timestamps and not head:   # the same as parsing each line
        assert expected == "".join(parse_line(raw).text + "\n" for raw in block.split("\n")[:-1])


def test_a_block_with_corral_s_own_line_is_noticed():
    assert logs.has_note(f"{ts(1)} out a\n{ts(2)} sys run 2 started pid 7\n".encode())
