"""The real assignment path, with credentials: `corral apply` to a reconciler (the leader), a builder that
builds the image and serves its layers only with a credential, and an agent with an images folder of its
own that fetches them over HTTP with the URLs its assignment carries, signed for it, and runs the app."""
import json
import os
import subprocess
import sys

import pytest
import requests

from corral import image_layout
from corral.auth import api_token
from corral.wire.keys import new_key_file, read_key
from tests.support import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MANIFEST = """apiVersion: corral/v1
kind: App
metadata: {name: plain}
spec:
  source: ./src
  processes:
    web:
      command: python -m http.server $PORT --bind 127.0.0.1
      instances: 1
      port: true
      stopGracePeriod: 2s
      drainPeriod: 0s
"""


class Daemons:
    """A reconciler, a builder and an agent, each a `corral` process on one SQLite store."""

    def __init__(self, tmp):
        self.tmp, self.procs = tmp, []
        self.dsn = f"sqlite:///{tmp / 'corral.db'}"
        new_key_file(str(tmp / "cluster.key"))
        self.api, bus, builder = free_port(), free_port(), free_port()
        self.env = dict(os.environ, CORRAL_STORE=self.dsn, CORRAL_SECRET_FILE=str(tmp / "cluster.key"),
                        CORRAL_API=f"http://127.0.0.1:{self.api}",
                        CORRAL_TOKEN=api_token(read_key(str(tmp / "cluster.key"))))
        self.builder = f"http://127.0.0.1:{builder}"
        self.start("reconciler", "--name", "r1", "--api", f"127.0.0.1:{self.api}", "--bus", f"tcp://127.0.0.1:{bus}",
                   "--routes", f"tcp://127.0.0.1:{free_port()}")
        self.start("builder", "--name", "b1", "--listen", f"127.0.0.1:{builder}", "--cache-dir", str(tmp / "cache"),
                   "--images-dir", str(tmp / "builder-images"), "--metrics", f"127.0.0.1:{free_port()}")
        self.images = tmp / "node-images"   # its own: the layers come over HTTP
        self.start("agent", "--name", "node-1", "--reconciler", f"tcp://127.0.0.1:{bus}", "--data-dir",
                   str(tmp / "node"), "--images-dir", str(self.images), "--no-app-users",
                   "--metrics", f"127.0.0.1:{free_port()}")

    def start(self, verb, *args):
        log = open(self.tmp / f"{verb}.log", "ab")
        self.procs.append(subprocess.Popen([sys.executable, "-m", "corral", verb, *args], env=self.env, cwd=ROOT,
                                           stdout=log, stderr=log))
        log.close()

    def corral(self, *args):
        done = subprocess.run([sys.executable, "-m", "corral", *args], env=self.env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def logs(self):
        return "".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(2)   # SIGINT: the agent stops its instances too
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def daemons(tmp_path):
    d = Daemons(tmp_path)
    yield d
    d.stop()


def test_an_app_applied_to_the_leader_is_fetched_with_signed_urls_and_runs(daemons, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.html").write_text("served from a layer fetched with a credential\n")
    (tmp_path / "plain.yaml").write_text(MANIFEST)
    wait_for("the reconciler's API", lambda: _answers(daemons.env["CORRAL_API"] + "/healthz"), timeout=30)
    daemons.corral("apply", "-f", "plain.yaml")

    def serving():
        rows = json.loads(daemons.corral("get", "instances", "-o", "json"))
        return [r for r in rows if r["app"] == "plain" and r.get("ready")]
    try:
        inst = wait_for("the app serving on node-1", serving, timeout=240)[0]
    except TimeoutError:
        pytest.fail("the app did not serve:\n" + daemons.logs())
    port = inst.get("port")
    assert "credential" in requests.get(f"http://127.0.0.1:{port}/index.html", timeout=5).text
    fetched = [image_layout.read_layer_marker(str(daemons.images), kind, layer_id)
               for kind in ("env", "code")
               for layer_id in ["sha256:" + n[:-5] for n in os.listdir(daemons.images / kind) if n.endswith(".json")]]
    assert len(fetched) == 2 and all(m["source"] == "agent" for m in fetched), "both layers came over HTTP"
    for marker in fetched:
        assert marker["url"].startswith(daemons.builder + "/layers/") and "?" not in marker["url"]
        assert requests.get(marker["url"], timeout=5).status_code == 401   # the URL without its credential


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
