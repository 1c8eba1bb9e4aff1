"""Versions and skew with real processes: a reconciler on a store migrated one release further serves its
API, says both schema versions, refuses to lead with one log sentence and takes no lease; `corral version`
lists the client, that reconciler, and a builder that does not answer."""
import json
import os
import subprocess
import sys

import requests

import corral
from corral.auth import api_token
from corral.store import open_store
from corral.store.schema import SCHEMA_VERSION
from corral.wire.keys import new_key_file, read_key
from tests.support import free_port, schema_one_further, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_reconciler_on_a_newer_schema_serves_but_never_leads_and_corral_version_says_so(tmp_path):
    dsn = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(dsn)
    schema_one_further(store)
    key = tmp_path / "secret"
    new_key_file(key)
    settings = tmp_path / "settings.yaml"
    settings.write_text("lease_ttl: 1\nlease_renew: 0.2\n")
    port, bus = free_port(), free_port()
    env = dict(os.environ, CORRAL_STORE=dsn, CORRAL_SECRET_FILE=str(key))
    proc = subprocess.Popen([sys.executable, "-m", "corral", "reconciler", "--name", "r-old", "--api",
                             f"127.0.0.1:{port}", "--bus", f"tcp://127.0.0.1:{bus}",
                             "--routes", f"tcp://127.0.0.1:{free_port()}", "--settings", str(settings)],
                            env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def health():
            try:
                return requests.get(url + "/healthz", timeout=1).json()
            except requests.RequestException:
                return None
        h = wait_for("the reconciler to answer, its lease having met the newer schema",
                     lambda: (health() or {}).get("store_schema") == SCHEMA_VERSION + 1 and health(), timeout=30)
        assert (h["version"], h["bus"], h["schema"], h["store_schema"], h["leader"]) == \
            (corral.__version__, 1, SCHEMA_VERSION, SCHEMA_VERSION + 1, False)
        done = subprocess.run([sys.executable, "-m", "corral", "version", "-o", "json", "--builder",
                               f"http://127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, CORRAL_API=url, CORRAL_TOKEN=api_token(read_key(key))))
        assert done.returncode == 0, done.stderr
        rows = {r["role"]: r for r in json.loads(done.stdout)}
        assert rows["client"]["version"] == corral.__version__
        assert (rows["reconciler"]["name"], rows["reconciler"]["store_schema"], rows["reconciler"]["skew"]) == \
            ("r-old", SCHEMA_VERSION + 1, True)
        assert rows["builder"]["error"].startswith("unreachable")
        assert store.get_lease("leader") is None, "the reconciler took the lease of a newer store"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        store.close()
    refusals = [line for line in err.splitlines() if "will not lead" in line]
    assert len(refusals) == 1, err[-3000:]
    assert f"the store's schema is version {SCHEMA_VERSION + 1}, newer than this corral's {SCHEMA_VERSION}" \
        in refusals[0]
