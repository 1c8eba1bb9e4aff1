"""`corral up --apply` says how the apps it applied fare (corral/cli/serving.py), in its own output:
where an app serves, or the sentence of why not, and the cluster stays up for a look."""
import urllib.request

import yaml

from tests.e2e.cluster import UpCluster, wait_for

CRASHER = 'import sys\nprint("boom: SECRET_KEY is not set", file=sys.stderr, flush=True)\nsys.exit(3)\n'
SERVER = ('import http.server, os\n'
          'http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)'
          '.serve_forever()\n')


def app(name, command, requirements=None):
    spec = {"source": "./src", "processes": {"web": {"command": command, "instances": 1, "port": True,
                                                      "stopGracePeriod": "2s", "drainPeriod": "0s"}}}
    if requirements:
        spec["requirements"] = requirements
    return {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": name}, "spec": spec}


def test_up_says_where_an_app_serves_and_why_others_do_not(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "crash.py").write_text(CRASHER)
    (tmp_path / "src" / "serve.py").write_text(SERVER)
    (tmp_path / "src" / "requirements.txt").write_text("corral-no-such-package-anywhere==1.0\n")
    manifest = tmp_path / "apps.yaml"
    manifest.write_text(yaml.safe_dump_all([app("fine", "python serve.py"), app("crashy", "python crash.py"),
                                            app("unbuilt", "python serve.py", "requirements.txt")]))
    cluster = UpCluster(tmp_path, nodes=1, apply=[str(manifest)])
    try:
        def said():
            out = cluster.tail(200)
            return all(f"app/{n}" in out for n in ("fine is serving", "crashy:", "unbuilt:")) and out
        out = wait_for("up to say how each app fares", said, timeout=240, interval=0.5)
        lines = out.splitlines()
        serving = next(line for line in lines if line.startswith("app/fine is serving: 1 of 1 instances ready at "))
        url = serving.rsplit(" at ", 1)[1]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        crash = next(n for n, line in enumerate(lines) if line.startswith("corral up: app/crashy: instance "))
        assert "keeps exiting" in lines[crash] and "exited with code 3" in lines[crash], lines[crash]
        assert lines[crash + 1].endswith(" | boom: SECRET_KEY is not set"), lines[crash:crash + 5]
        assert len([line for line in lines if "app/crashy: instance" in line]) == 1, "said once, not per restart"
        failed = next(line for line in lines if line.startswith("corral up: app/unbuilt: the build failed: "))
        assert "corral-no-such-package-anywhere" in failed
        assert cluster.proc.poll() is None, "the cluster stays up after a failure"
        assert cluster.corral("get", "nodes").returncode == 0
    finally:
        assert cluster.down() == 0
