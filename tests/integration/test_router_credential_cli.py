"""`corral router-credential` and `corral router --credential` as an operator meets them: the file is written
0600 and never over another, and a router given a wrong or missing credential (the cluster key's file
among them) says so in one sentence and exits 1 before it listens."""
import os
import stat
import subprocess
import sys

from corral.wire.keys import new_key_file
from corral.wire.routercred import RouterCredential, load_credential
from tests.support import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corral(*args, env=None):
    return subprocess.run([sys.executable, "-m", "corral", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_the_credential_is_written_once_0600_and_matches_the_key(tmp_path):
    key = tmp_path / "secret"
    cluster_key = new_key_file(key)
    out = tmp_path / "router.credential"
    done = corral("router-credential", "--output", str(out), env={"CORRAL_SECRET_FILE": str(key)})
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_credential(out) == RouterCredential.of_cluster(cluster_key)
    assert cluster_key.hex() not in out.read_text()
    before = out.read_bytes()
    again = corral("router-credential", "--output", str(out), env={"CORRAL_SECRET_FILE": str(key)})
    assert again.returncode == 1 and again.stderr.strip() == \
        f"error: {out} already exists; remove it first if you mean to replace it"
    assert out.read_bytes() == before
    printed = corral("router-credential", env={"CORRAL_SECRET_FILE": str(key)})
    assert printed.returncode == 0 and printed.stdout == before.decode()


def test_without_the_key_it_says_where_it_looked(tmp_path):
    done = corral("router-credential", "--output", str(tmp_path / "c"),
                  env={"CORRAL_SECRET_FILE": str(tmp_path / "none")})
    assert done.returncode == 1 and done.stderr.startswith(f"error: key file {tmp_path / 'none'} does not exist")
    assert not (tmp_path / "c").exists()


def test_a_router_given_the_cluster_key_or_nothing_refuses_to_start(tmp_path):
    key = tmp_path / "secret"
    new_key_file(key)
    feed = f"tcp://127.0.0.1:{free_port()}"
    common = ["router", "--reconciler", feed, "--listen", f"127.0.0.1:{free_port()}",
              "--health", f"127.0.0.1:{free_port()}", "--workers", "1"]
    done = corral(*common, "--credential", str(key))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: router credential {key} is not one (make it again with `corral router-credential`; "
        "a cluster key is not a router credential)")
    missing = corral(*common, env={"CORRAL_ROUTER_CREDENTIAL": str(tmp_path / "none"),
                                   "CORRAL_SECRET_FILE": str(key)})
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith(
        f"error: router credential {tmp_path / 'none'} does not exist; make it on a reconciler's host")
