"""A daemon stopped while it starts stops once it is up (corral up stops its daemons at any moment, one
of them perhaps just started again): a SIGINT that lands inside eventlet's monkey-patching used to be
swallowed there, and the reconciler ran on until SIGKILLed."""
import os
import signal
import subprocess
import sys
import time

import pytest

from corral.wire.keys import new_key_file
from tests.support import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("after", [0.05, 0.2, 0.5])
def test_a_reconciler_sent_sigint_while_it_starts_stops(tmp_path, after):
    key = str(tmp_path / "cluster.key")
    new_key_file(key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "reconciler", "--api", f"127.0.0.1:{free_port()}",
         "--bus", f"tcp://127.0.0.1:{free_port()}", "--routes", f"tcp://127.0.0.1:{free_port()}",
         "--secret-file", key, "--name", "r-early"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=dict(os.environ, CORRAL_STORE=f"sqlite:///{tmp_path}/c.db"))
    time.sleep(after)   # the moment of the stop is the input here, not a wait for a condition
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the reconciler ran on after a SIGINT sent while it started: "
                    + proc.stderr.read().decode(errors="replace")[-1500:])
    assert code in (0, -signal.SIGINT, 130), proc.stderr.read().decode(errors="replace")[-1500:]
