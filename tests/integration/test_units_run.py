"""The units' command lines start the daemons: `corral install-units` writes each role's unit and environment
file (here into a scratch folder, with scratch data folders and free ports), and the test runs exactly the
unit's ExecStart with exactly its EnvironmentFile, as systemd would: the reconciler and the builder answer
their /healthz, the agent reports to the reconciler, its version with it, and the router follows the
reconciler's route feed with the credential `corral router-credential` wrote (never the cluster key). Then `corral doctor` on this
machine, against those daemons, gives a clean report for either role."""
import configparser
import os
import shlex
import signal
import subprocess
import sys

import pytest
import requests

import corral
from corral.auth import api_token
from corral.wire.keys import new_key_file, read_key
from tests.support import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = os.path.join(os.path.dirname(sys.executable), "corral")


def install(tmp_path, role, *flags):
    """Run `corral install-units` for ``role`` into ``tmp_path``; return (argv, env) as systemd would run it."""
    env_file = tmp_path / f"{role}.env"
    done = subprocess.run([EXE, "install-units", "--role", role, "--unit-dir", str(tmp_path / "units"),
                           "--env-file", str(env_file), "--exec", EXE, *flags],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(tmp_path / "units" / f"corral-{role}.service")
    service = parser["Service"]
    assert service["EnvironmentFile"] == str(env_file)
    env = {"PATH": os.environ["PATH"]}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return shlex.split(service["ExecStart"]), env


def answers(url):
    try:
        return requests.get(url, timeout=1).json()
    except (requests.RequestException, ValueError):
        return None


@pytest.fixture
def started():
    procs = []

    def start(argv, env):
        procs.append(subprocess.Popen(argv, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        return procs[-1]
    yield start
    for p in procs:   # SIGINT: the agent stops its (no) instances too
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_each_units_command_line_starts_its_daemon(tmp_path, started):
    settings = tmp_path / "settings.yaml"
    settings.write_text("lease_ttl: 2\nlease_renew: 0.4\nheartbeat: 0.3\n")
    key = tmp_path / "secret"
    new_key_file(key)
    store = f"sqlite:///{tmp_path / 'corral.db'}"
    api, bus, images, feed = free_port(), free_port(), free_port(), free_port()
    common = ["--settings", str(settings)]

    argv, env = install(tmp_path, "reconciler", "--name", "r1", "--api", f"127.0.0.1:{api}",
                        "--bus", f"tcp://127.0.0.1:{bus}", "--routes", f"tcp://127.0.0.1:{feed}",
                        "--store", store, *common)
    env["CORRAL_SECRET_FILE"] = str(key)   # the file says /etc/corral/secret; this machine's is here
    assert store not in argv and str(key) not in argv
    started(argv, env)
    health = wait_for("the reconciler's /healthz", lambda: answers(f"http://127.0.0.1:{api}/healthz"), timeout=30)
    assert health["version"] == corral.__version__

    argv, env = install(tmp_path, "builder", "--name", "b1", "--listen", f"127.0.0.1:{images}", "--store", store,
                        "--cache-dir", str(tmp_path / "cache"), "--images-dir", str(tmp_path / "images"), *common)
    started(argv, env)
    health = wait_for("the builder's /healthz", lambda: answers(f"http://127.0.0.1:{images}/healthz"), timeout=30)
    assert (health["role"], health["version"]) == ("builder", corral.__version__)

    argv, env = install(tmp_path, "agent", "--name", "unit-node", "--reconciler", f"tcp://127.0.0.1:{bus}",
                        "--data-dir", str(tmp_path / "node"), "--images-dir", str(tmp_path / "images"), *common)
    env["CORRAL_SECRET_FILE"] = str(key)
    started(argv, env)
    token = api_token(read_key(key))

    router, router_health = free_port(), free_port()
    argv, env = install(tmp_path, "router", "--listen", f"127.0.0.1:{router}", "--health",
                        f"127.0.0.1:{router_health}", "--reconciler", f"tcp://127.0.0.1:{feed}", *common)
    assert "CORRAL_SECRET_FILE" not in env   # a router never holds the cluster key: its credential instead
    credential = tmp_path / "router.credential"
    made = subprocess.run([EXE, "router-credential", "--output", str(credential)], capture_output=True, text=True,
                          env={**os.environ, "CORRAL_SECRET_FILE": str(key)}, timeout=60)
    assert made.returncode == 0, made.stderr
    env["CORRAL_ROUTER_CREDENTIAL"] = str(credential)   # the file says /etc/corral/router.credential
    started(argv, env)

    def following():
        health = answers(f"http://127.0.0.1:{router_health}/")
        return health and any(s["live"] for s in health["sources"].values())
    wait_for("the router following the reconciler's route feed", following, timeout=30)
    assert requests.get(f"http://127.0.0.1:{router}/", headers={"Host": "nobody.localhost"}, timeout=5).status_code == 404

    def reported():
        r = requests.get(f"http://127.0.0.1:{api}/v1/nodes", headers={"Authorization": f"Bearer {token}"}, timeout=2)
        return [n for n in r.json() if n["name"] == "unit-node" and n.get("version")]
    (node,) = wait_for("the agent's report", reported, timeout=30)
    assert node["version"] == corral.__version__

    # corral doctor on this machine, against the daemons just started: a clean report for either role
    node = subprocess.run([EXE, "doctor", "--role", "node", "--api", f"http://127.0.0.1:{api}",
                           "--reconciler", f"tcp://127.0.0.1:{bus}", "--builder", f"http://127.0.0.1:{images}",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    plane = subprocess.run([EXE, "doctor", "--role", "control-plane", "--store", store, "--port", str(api),
                            "--port", str(bus), "--port", str(images), "--data-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    for done in (node, plane):
        assert (done.returncode, done.stderr) == (0, ""), done.stdout
        assert "FAIL" not in done.stdout and done.stdout.rstrip().endswith("checks)"), done.stdout
    assert f"ok    reach bus: tcp://127.0.0.1:{bus}" in node.stdout
    assert "ok    clock: within" in node.stdout
    assert f"ok    port {api}: held by corral reconciler" in plane.stdout
    assert "ok    store schema: version" in plane.stdout
