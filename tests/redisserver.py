"""Redis for tests: the server on 127.0.0.1:6379 when it answers, else a throwaway one.

``redis_url()`` is the same URL for every call in one process; a throwaway
server (``redis-server`` on a free port, no persistence) is stopped at exit.
Tests keep to key prefixes and ACL users of their own, so a shared server is safe.
"""
import atexit
import shutil
import socket
import subprocess
import time

LOCAL = ("127.0.0.1", 6379)
_session = {}


def _answers(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def redis_url():
    """A Redis URL whose default user may run ACL, SCAN and RESTORE; RuntimeError (one sentence) when none
    answers on 127.0.0.1:6379 and redis-server is not installed."""
    if "url" in _session:
        return _session["url"]
    if _answers(*LOCAL):
        _session["url"] = "redis://127.0.0.1:6379"
        return _session["url"]
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("no Redis answers on 127.0.0.1:6379 and redis-server is not installed (apt-get install "
                           "redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: (proc.terminate(), proc.wait(10)))
    deadline = time.monotonic() + 10
    while not _answers("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    _session["url"] = f"redis://127.0.0.1:{port}"
    return _session["url"]
