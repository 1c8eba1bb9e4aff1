"""tests/support.serve_bytes in a process that eventlet greens, each in a child process of its own: it serves
when http.server comes after the patch, and refuses in one sentence (rather than hang the run) when it came before."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = """
{early}
import corral.green
corral.green.patch()
import requests
from tests.support import serve_bytes
server = serve_bytes({{"x": b"hi"}})
print(requests.get(server.url + "/x", timeout=5).text)
"""


@pytest.mark.parametrize("early, code, out", [
    ("", 0, "hi"),
    ("import http.server", 1, "socketserver was imported before eventlet greened this process"),
])
def test_serve_bytes_in_a_greened_process(early, code, out):
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(early=early)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == code and out in done.stdout + done.stderr, done.stderr[-2000:]
