"""An image layer whose tar archive is padded to a large record (the builder writes 128 KiB records) must
unpack on an agent that fetches it over HTTP, under eventlet as the agent runs.

Found by the cluster suite's disk scenario (the only one whose agent fetches images instead of sharing the
builder's folder): the agent's fetch never returned, with its tar child exited (the agent has unpacked
layers itself since, but the records stay a case to pass). Each fetch runs in a child
process with a time bound, so that a hang fails the test instead of holding the run.
"""
import hashlib
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FETCH = """
import corral.green
corral.green.patch()
import sys
from nodeagent.pull import _fetch_unpack
print(_fetch_unpack([sys.argv[1]], sys.argv[2], sys.argv[3], "layer"))
"""


@pytest.fixture
def served(tmp_path):
    """Serve ``tmp_path`` over HTTP on loopback from a process of its own (this test process may be
    green-patched by other test modules, where a server thread would wait on the blocked hub); yields
    its base URL."""
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                               "--directory", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        line = server.stdout.readline()   # "Serving HTTP on 127.0.0.1 port 40123 (http://...) ..."
        port = int(re.search(r" port (\d+)", line).group(1))
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def archive(folder, name, record_bytes):
    """A tar of one small file, written with records of ``record_bytes`` (zero padding after its end)."""
    src = folder / "src"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("hello\n")
    path = folder / name
    subprocess.run(["tar", "--create", f"--blocking-factor={record_bytes // 512}", "--file", str(path),
                    "--directory", str(src), "a.txt"], check=True)
    data = path.read_bytes()
    return path, hashlib.sha256(data).hexdigest(), len(data)


def fetch(url, dest, sha256):
    return subprocess.run([sys.executable, "-c", FETCH, url, str(dest), sha256], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_a_layer_in_default_records_unpacks(tmp_path, served):
    path, sha, size = archive(tmp_path, "small.tar", 10240)
    done = fetch(f"{served}/small.tar", tmp_path / "out", sha)
    assert done.returncode == 0, done.stderr[-500:]
    assert (tmp_path / "out" / "a.txt").read_text() == "hello\n"


def test_a_layer_padded_to_128k_records_unpacks(tmp_path, served):
    path, sha, size = archive(tmp_path, "padded.tar", 128 * 1024)
    assert size == 128 * 1024
    done = fetch(f"{served}/padded.tar", tmp_path / "out", sha)
    assert done.returncode == 0, done.stderr[-500:]
    assert (tmp_path / "out" / "a.txt").read_text() == "hello\n"


def test_the_parser_reads_the_end_marker_and_takes_the_zero_padding_after_it(tmp_path):
    from nodeagent.tarscan import members
    path, _, size = archive(tmp_path, "scan.tar", 128 * 1024)
    data = path.read_bytes()
    # one header + one data block, then the two zero blocks of the end marker, then zeros to 128 KiB
    assert [m.name for m in members(lambda offset, n: data[offset:offset + n], size)] == ["a.txt"]
