"""Raw fd writes from green threads: a reader that exits early must end the write, not hang it.

Under eventlet, ``Popen(stdin=PIPE).stdin.write`` to a child that has exited
spins for ever; an agent fetching an image hung that way when tar stopped.
Each case runs in a child process with a time bound, so a hang fails the test.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EARLY_EXIT = """
import corral.green
corral.green.patch()
import os, subprocess
from nodeagent import fdio
r, w = os.pipe()
child = subprocess.Popen(["head", "-c", "1"], stdin=r, stdout=subprocess.DEVNULL)
os.close(r)
os.set_blocking(w, False)
ok = all(fdio.write_all(w, b"x" * 65536) for _ in range(64))   # 4 MiB: far more than a pipe holds
fdio.close_fd(w)
print(ok, child.wait())
"""

WHOLE = """
import corral.green
corral.green.patch()
import os, subprocess
from nodeagent import fdio
r, w = os.pipe()
child = subprocess.Popen(["wc", "-c"], stdin=r, stdout=subprocess.PIPE, text=True)
os.close(r)
os.set_blocking(w, False)
ok = fdio.write_all(w, b"y" * 3_000_000)
fdio.close_fd(w)
print(ok, child.communicate()[0].strip())
"""


def run(script):
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_write_to_a_reader_that_exited_says_so_instead_of_hanging():
    done = run(EARLY_EXIT)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split() == ["False", "0"]


def test_a_write_larger_than_the_pipe_arrives_whole():
    done = run(WHOLE)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split() == ["True", "3000000"]
