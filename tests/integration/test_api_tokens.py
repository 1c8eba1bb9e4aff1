"""Named API tokens end to end: made, listed, revoked and rotated with the `corral` command against real
reconcilers over HTTP; a revocation written through one reconciler is refused by the other at its next
request (SQLite and PostgreSQL); the secret is in no row and no byte of the store; `corral auth rotate`
replaces the client config's tokens (the cluster-key ones the first time, for good); `corral up` mints its
own named tokens in the store."""
import json
import os
import subprocess
import sys

import pytest

from corral.auth import api_token, token_hash
from corral.cli.client import write_config
from corral.store import open_store
from tests.integration.test_api_auth import ask, make_token
from tests.support import fresh_store_dsn, reconciler_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corral(env, *args):
    """Run the `corral` command with ``env``; the finished process."""
    return subprocess.run([sys.executable, "-m", "corral", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def client_env(tmp_path, port, token=None):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), CORRAL_API=f"http://127.0.0.1:{port}")
    env.pop("CORRAL_TOKEN", None)
    if token:
        env["CORRAL_TOKEN"] = token
    return env


def whoami(port, token):
    status, _, body = ask(port, "GET", "/v1/whoami", f"Bearer {token}")
    return status, json.loads(body)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_dsn(request, tmp_path):
    with fresh_store_dsn(request.param, str(tmp_path)) as dsn:
        yield dsn


def test_a_token_revoked_or_rotated_through_one_reconciler_is_refused_by_the_other_at_its_next_request(
        tmp_path, store_dsn):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    with reconciler_process(tmp_path / "r1", name="r1", store=store_dsn) as (p1, key), \
            reconciler_process(tmp_path / "r2", name="r2", store=store_dsn,
                               key_file=str(tmp_path / "r1" / "cluster.key")) as (p2, _):
        root = make_token(p1, api_token(key), "root", "admin")
        ci = make_token(p1, root, "ci", "deploy")
        assert whoami(p2, ci) == (200, {"name": "ci", "role": "deploy"})
        assert ask(p1, "POST", "/v1/tokens/ci/revoke", f"Bearer {root}")[0] == 200
        status, body = whoami(p2, ci)          # no pause: the very next request
        assert status == 401 and body["error"].startswith("API token 'ci' was revoked at ")
        status, _, raw = ask(p2, "POST", "/v1/tokens/root/rotate", f"Bearer {root}")
        assert status == 200
        assert whoami(p1, root)[0] == 401 and whoami(p1, json.loads(raw)["token"]) == (200, {"name": "root",
                                                                                             "role": "admin"})
        assert whoami(p2, api_token(key))[0] == 401   # the cluster-key token: off on both once named ones exist


def test_the_cli_makes_lists_and_revokes_tokens_and_the_store_holds_no_secret(tmp_path):
    with reconciler_process(tmp_path, name="r-cli") as (port, key):
        boot = client_env(tmp_path, port, api_token(key))
        made = corral(boot, "token", "create", "root", "--role", "admin")
        assert made.returncode == 0 and "this is the only time it is shown" in made.stderr, made.stderr
        root = made.stdout.strip()
        admin = client_env(tmp_path, port, root)
        ci = corral(admin, "token", "create", "ci", "--role", "deploy", "--expires", "30d").stdout.strip()
        assert whoami(port, ci) == (200, {"name": "ci", "role": "deploy"})
        listed = json.loads(corral(admin, "token", "list", "-o", "json").stdout)
        assert [(t["name"], t["role"], t["state"], t["createdBy"]) for t in listed] == [
            ("ci", "deploy", "active", "token/root"), ("root", "admin", "active", "token/cluster-key/admin")]
        assert listed[0]["expires"] and listed[1]["expires"] is None and listed[1]["lastUsed"]
        table = corral(admin, "token", "list").stdout
        assert table.split("\n")[0].split() == ["NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST-USED"]
        for output in (table, json.dumps(listed), corral(admin, "token", "list", "-o", "yaml").stdout):
            assert root not in output and ci not in output and token_hash(ci) not in output

        refused = corral(client_env(tmp_path, port, ci), "token", "list")
        assert refused.returncode == 1 and refused.stderr.strip() == \
            "error: a deploy token may not GET /v1/tokens: that needs the admin role"
        for bad, says in ((["create", "Bad!", "--role", "read"], "token name 'Bad!' is not allowed"),
                          (["create", "x", "--role", "read", "--expires", "3x"], "--expires '3x' is not a lifetime"),
                          (["create", "ci", "--role", "read"], "an API token named 'ci' exists already"),
                          (["revoke", "nope"], "token 'nope' not found")):
            r = corral(admin, "token", *bad)
            assert r.returncode == 1 and r.stderr.startswith(f"error: {says}") and not r.stdout, (bad, r.stderr)

        r = corral(admin, "token", "revoke", "ci")
        assert r.returncode == 0 and r.stdout.strip() == "token/ci revoked: every reconciler refuses it from now on"
        r = corral(client_env(tmp_path, port, ci), "get", "apps")
        assert r.returncode == 1 and "API token 'ci' was revoked at" in r.stderr
        events = json.loads(corral(admin, "get", "events", "-o", "json").stdout)
        assert ("ci", "Revoked", "token/root") in [(e["name"], e["reason"], e["actor"]) for e in events]

        store = open_store(f"sqlite:///{tmp_path}/corral.db")
        try:
            rows = {t.name: t for t in store.list_api_tokens()}
        finally:
            store.close()
        assert rows["ci"].token_hash == token_hash(ci) and rows["root"].token_hash == token_hash(root)
        for name in os.listdir(tmp_path):   # the database and its WAL: no byte of either secret
            if name.startswith("corral.db"):
                data = (tmp_path / name).read_bytes()
                assert ci.encode() not in data and root.encode() not in data and root[7:].encode() not in data


def test_auth_rotate_replaces_the_cluster_key_tokens_once_and_then_rotates_the_named_ones(tmp_path):
    with reconciler_process(tmp_path, name="r-rotate") as (port, key):
        env = client_env(tmp_path, port)
        url = [f"http://127.0.0.1:{port}"]
        write_config(url, api_token(key), environ=env, tokens={r: api_token(key, r) for r in ("admin", "deploy", "read")})
        config = tmp_path / "config" / "corral" / "config.yaml"

        r = corral(env, "auth", "rotate")
        assert r.returncode == 0, r.stderr
        assert "initial-admin, initial-deploy, initial-read have new secrets" in r.stdout
        first = json.loads(config.read_text())
        assert first["token"] == first["tokens"]["admin"] and first["api"] == url
        for role in ("admin", "deploy", "read"):
            assert whoami(port, first["tokens"][role]) == (200, {"name": f"initial-{role}", "role": role})
            assert whoami(port, api_token(key, role))[0] == 401

        r = corral(env, "auth", "rotate")
        assert r.returncode == 0, r.stderr
        second = json.loads(config.read_text())
        for role in ("admin", "deploy", "read"):
            assert second["tokens"][role] != first["tokens"][role]
            assert whoami(port, first["tokens"][role])[0] == 401
            assert whoami(port, second["tokens"][role]) == (200, {"name": f"initial-{role}", "role": role})
        assert oct(config.stat().st_mode & 0o777) == "0o600"

        r = corral(dict(env, CORRAL_TOKEN=second["token"]), "auth", "rotate")
        assert r.returncode == 1 and r.stderr.startswith("error: CORRAL_TOKEN is set")


def test_up_mints_its_own_named_tokens_and_a_second_up_replaces_them(tmp_path):
    from corral.cli.up import mint_tokens
    dsn = f"sqlite:///{tmp_path}/corral.db"
    first = mint_tokens(dsn)
    second = mint_tokens(dsn)
    store = open_store(dsn)
    try:
        assert [(t.name, t.role, t.created_by) for t in store.list_api_tokens()] == [
            ("up-admin", "admin", "corral-up"), ("up-deploy", "deploy", "corral-up"), ("up-read", "read", "corral-up")]
        for role in ("admin", "deploy", "read"):
            assert store.find_api_token(token_hash(first[role])) is None
            assert store.find_api_token(token_hash(second[role])).role == role
        assert store.has_api_tokens()
    finally:
        store.close()


def test_an_open_change_stream_ends_soon_after_its_token_is_revoked(tmp_path):
    """A watch opened before the revocation does not outlive it: the stream ends with a ``dropped`` event
    saying why within a second or so (it checks its token at each keepalive), and the CLI's reconnection
    is then refused."""
    import http.client
    import time
    with reconciler_process(tmp_path, name="r-watch", settings={"watch_keepalive": 0.2}) as (port, key):
        root = make_token(port, api_token(key), "root", "admin")
        viewer = make_token(port, root, "viewer", "read")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/v1/watch?kinds=apps", headers={"Authorization": f"Bearer {viewer}"})
            resp = conn.getresponse()
            assert resp.status == 200
            while resp.fp.readline() != b"event: synced\n":
                pass
            assert ask(port, "POST", "/v1/tokens/viewer/revoke", f"Bearer {root}")[0] == 200
            revoked = time.monotonic()
            lines = []
            while not lines or lines[-1] != b"event: dropped\n":
                lines.append(resp.fp.readline())
                assert lines[-1], "the stream ended without saying why"
            took = time.monotonic() - revoked
            error = json.loads(resp.fp.readline()[len(b"data: "):])["error"]
        finally:
            conn.close()
        assert error.startswith("API token 'viewer' was revoked at ") and took < 3.0, (error, took)
        assert whoami(port, viewer)[0] == 401


def test_up_says_in_one_sentence_when_it_cannot_reach_the_store_for_its_tokens():
    from corral.cli.client import ClientError
    from corral.cli.up import mint_tokens
    with pytest.raises(ClientError, match=r"^cannot make the client config's API tokens: store unreachable: ") as caught:
        mint_tokens("postgresql://corral:sekret@127.0.0.1:1/corral?connect_timeout=1")
    assert "sekret" not in str(caught.value)
