"""The leader's git sync against a real repository (made with the git command) and a real
store, on SQLite and PostgreSQL: apply, no-change, broken commit, prune, failover mid-sync,
and the webhook and sync routes of the API."""
import io
import json
import os
import subprocess

import pytest

from corral.spec import validate_document
from corral.store import Fenced
from reconciler.api import Api
from reconciler.gitops.repo import GitRepos
from reconciler.gitops.routes import gitsource_document, webhook_key, webhook_token
from reconciler.gitops.sync import GitSync
from tests.support import fresh_store

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
APP = """apiVersion: corral/v1
kind: App
metadata:
  name: {name}
spec:
  source: ./src
  processes:
    web:
      command: serve
      instances: {instances}
"""


class Repo:
    def __init__(self, path):
        self.path = str(path)
        os.makedirs(os.path.join(self.path, "apps", "src"))
        with open(os.path.join(self.path, "apps", "src", "app.py"), "w") as f:
            f.write("print('app')\n")
        self.git("init", "-q", "-b", "main")

    def git(self, *args):
        return subprocess.run(["git", "-C", self.path, *args], check=True, capture_output=True,
                              env=GIT_ENV, text=True).stdout.strip()

    def write(self, name, text):
        with open(os.path.join(self.path, "apps", name), "w") as f:
            f.write(text)

    def commit(self, message="change"):
        self.git("add", "-A")
        self.git("commit", "-qm", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with fresh_store(request.param, str(tmp_path)) as s:
        yield s


@pytest.fixture
def repo(tmp_path):
    r = Repo(tmp_path / "repo")
    r.write("one.yaml", APP.format(name="one", instances=1))
    r.write("two.yaml", APP.format(name="two", instances=1))
    r.commit("two apps")
    return r


def add_source(store, repo, **spec):
    doc = validate_document({"apiVersion": "corral/v1", "kind": "GitSource", "metadata": {"name": "fleet"},
                             "spec": {"url": repo.path, "path": "apps", **spec}})
    store.apply_apps([], actor="cli", gitsources=[gitsource_document(doc)])
    return store.get_gitsource("fleet")


def instances(store, name):
    return store.get_app(name).spec["processes"]["web"]["instances"]


def test_sync_applies_the_commit_then_a_no_change_sync_writes_no_app(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    sync = GitSync(store, GitRepos(str(tmp_path / "git")), "r1")
    status = sync.sync(add_source(store, repo), epoch)
    head = repo.git("rev-parse", "HEAD")
    assert status["syncedCommit"] == head and status["lastError"] is None
    assert store.get_app("one").owner == f"gitsource/fleet@{head}"
    assert store.has_source(store.get_app("one").source_digest)
    version = store.apps_version()
    sync.sync(store.get_gitsource("fleet"), epoch)
    assert store.apps_version() == version


def test_a_broken_commit_keeps_the_last_good_one_and_names_file_line_and_reason(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    sync = GitSync(store, GitRepos(str(tmp_path / "git")), "r1")
    good = sync.sync(add_source(store, repo), epoch)["syncedCommit"]
    repo.write("one.yaml", APP.format(name="one", instances=4))
    repo.write("two.yaml", APP.format(name="two", instances="many"))
    bad = repo.commit("broken")
    status = sync.sync(store.get_gitsource("fleet"), epoch)
    assert status["syncedCommit"] == good and status["fetchedCommit"] == bad
    assert status["lastError"] == "apps/two.yaml:10: spec.processes.web.instances: 'many' is not a whole number"
    assert instances(store, "one") == 1, "one file of a broken commit must not be applied alone"
    assert [e.reason for e in store.list_events(kind="gitsource", name="fleet")][-1] == "SyncFailed"


def test_a_commit_whose_app_claims_another_apps_route_is_refused_naming_the_owner(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.apply_apps([{"name": "hand", "labels": {}, "source_digest": "sha256:h",
                       "spec": {"processes": {"web": {"command": "x", "port": True}},
                                "routes": [{"host": "shop.test", "path": "/"}]}}], actor="cli")
    sync = GitSync(store, GitRepos(str(tmp_path / "git")), "r1")
    good = sync.sync(add_source(store, repo), epoch)["syncedCommit"]
    repo.write("one.yaml", APP.format(name="one", instances=3).replace("      instances: 3\n", (
        "      instances: 3\n      port: true\n  routes:\n    - host: Shop.Test\n")))
    bad = repo.commit("one takes hand's host")
    status = sync.sync(store.get_gitsource("fleet"), epoch)
    assert status["syncedCommit"] == good
    assert status["lastError"] == (f"commit {bad[:12]}: app one: host shop.test path / is already routed to app hand; "
                                   "remove it from hand's routes first, or choose another host or path")
    assert instances(store, "one") == 1


def test_a_deleted_file_is_pruned_and_a_hand_applied_app_survives(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    store.apply_apps([{"name": "hand", "labels": {}, "spec": {"processes": {}}, "source_digest": "sha256:h"}],
                     actor="cli")
    sync = GitSync(store, GitRepos(str(tmp_path / "git")), "r1")
    sync.sync(add_source(store, repo), epoch)
    repo.git("rm", "-q", "apps/one.yaml")
    repo.commit("drop one")
    sync.sync(store.get_gitsource("fleet"), epoch)
    assert store.get_app("one").deleting
    assert not store.get_app("two").deleting and not store.get_app("hand").deleting


def test_a_failover_mid_sync_leaves_the_last_whole_commit(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    sync = GitSync(store, GitRepos(str(tmp_path / "git")), "r1")
    first = sync.sync(add_source(store, repo), epoch)["syncedCommit"]
    repo.write("one.yaml", APP.format(name="one", instances=2))
    repo.write("three.yaml", APP.format(name="three", instances=1))
    repo.git("rm", "-q", "apps/two.yaml")
    repo.commit("three changes")
    real_fetch = sync.repos.fetch

    def fetch_then_lose_the_lease(url, branch):  # the lease passes on while r1 is mid-sync
        commit = real_fetch(url, branch)
        store.release_lease("leader", "r1")
        store.acquire_lease("leader", "r2", ttl=60)
        return commit
    sync.repos.fetch = fetch_then_lose_the_lease
    with pytest.raises(Fenced):
        sync.sync(store.get_gitsource("fleet"), epoch)
    assert instances(store, "one") == 1 and store.get_app("three") is None and not store.get_app("two").deleting
    assert store.get_gitsource("fleet").status["syncedCommit"] == first
    # The new leader syncs the new commit whole.
    sync.repos.fetch = real_fetch
    GitSync(store, GitRepos(str(tmp_path / "git2")), "r2").sync(store.get_gitsource("fleet"),
                                                               store.get_lease("leader").epoch)
    assert instances(store, "one") == 2 and store.get_app("three") and store.get_app("two").deleting


def call(api, method, path, body=b"", headers=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), **(headers or {})}
    out = {}
    payload = b"".join(api(environ, lambda status, hdrs: out.update(status=int(status.split()[0]))))
    return out["status"], json.loads(payload) if payload else None


def test_webhook_takes_the_source_token_and_requests_a_sync(store, repo):
    import hashlib
    import hmac
    add_source(store, repo)
    api = Api(store, state=None, token="api-token", kick=lambda: None)
    token = webhook_token(webhook_key(store), "fleet")
    assert call(api, "POST", "/v1/gitsources/fleet/webhook")[0] == 401
    assert call(api, "POST", "/v1/gitsources/fleet/webhook", headers={"HTTP_X_CORRAL_TOKEN": "api-token"})[0] == 401
    assert store.get_gitsource("fleet").sync_requested_at is None
    status, body = call(api, "POST", "/v1/gitsources/fleet/webhook", headers={"HTTP_X_GITLAB_TOKEN": token})
    assert status == 202 and store.get_gitsource("fleet").sync_requested_at == body["requestedAt"]
    payload = b'{"ref": "refs/heads/main"}'
    signed = "sha256=" + hmac.new(token.encode(), payload, hashlib.sha256).hexdigest()
    assert call(api, "POST", "/v1/gitsources/fleet/webhook", payload,
                {"HTTP_X_HUB_SIGNATURE_256": signed})[0] == 202
    assert call(api, "POST", "/v1/gitsources/fleet/webhook", payload + b" ",
                {"HTTP_X_HUB_SIGNATURE_256": signed})[0] == 401
    # The sync route and the source itself need the API token; the source shows its webhook token.
    assert call(api, "POST", "/v1/gitsources/fleet/sync")[0] == 401
    auth = {"HTTP_AUTHORIZATION": "Bearer api-token"}
    assert call(api, "POST", "/v1/gitsources/fleet/sync", headers=auth)[0] == 202
    status, shown = call(api, "GET", "/v1/gitsources/fleet", headers=auth)
    assert status == 200 and shown["webhook"]["token"] == token
    assert call(api, "GET", "/v1/gitsources/nope", headers=auth) == (404, {"error": "gitsource 'nope' not found"})


def test_a_read_token_sees_a_source_but_not_its_webhook_token_which_would_let_it_start_syncs(store, repo):
    add_source(store, repo)
    api = Api(store, state=None, token="api-token", kick=lambda: None,
              tokens={"admin": "api-token", "deploy": "deploy-token", "read": "read-token"})
    for role, token in (("read", "read-token"), ("deploy", "deploy-token")):
        status, shown = call(api, "GET", "/v1/gitsources/fleet", headers={"HTTP_AUTHORIZATION": f"Bearer {token}"})
        assert status == 200 and shown["name"] == "fleet"
        assert ("webhook" in shown) is (role != "read"), role
        assert call(api, "POST", "/v1/gitsources/fleet/sync",
                    headers={"HTTP_AUTHORIZATION": f"Bearer {token}"})[0] == (403 if role == "read" else 202)


def test_a_sync_that_read_its_source_before_the_source_was_deleted_applies_nothing(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    sync = GitSync(store, GitRepos(str(tmp_path / "git")), "r1")
    sync.sync(add_source(store, repo), epoch)
    rec = store.get_gitsource("fleet")  # the leader's read, just before the user's delete
    repo.write("three.yaml", APP.format(name="three", instances=1))
    repo.commit("a third app")
    assert store.delete_gitsource("fleet", cascade=False, actor="cli") == ["one", "two"]
    sync.sync(rec, epoch)
    assert store.get_app("three") is None
    assert store.get_app("one").owner is None and not store.get_app("one").deleting


def test_delete_route_releases_or_cascades_and_needs_the_api_token(store, repo, tmp_path):
    epoch = store.acquire_lease("leader", "r1", ttl=60).epoch
    GitSync(store, GitRepos(str(tmp_path / "git")), "r1").sync(add_source(store, repo), epoch)
    kicked = []
    api = Api(store, state=None, token="api-token", kick=lambda *apps: kicked.extend(apps))
    auth = {"HTTP_AUTHORIZATION": "Bearer api-token"}
    assert call(api, "DELETE", "/v1/gitsources/fleet")[0] == 401
    assert call(api, "DELETE", "/v1/gitsources/fleet", headers={**auth, "QUERY_STRING": "cascade=yes"}) == (
        400, {"error": "cascade='yes': say true or false"})
    assert store.get_gitsource("fleet") is not None
    assert call(api, "DELETE", "/v1/gitsources/fleet", headers={**auth, "QUERY_STRING": "cascade=true"}) == (
        200, {"name": "fleet", "cascade": True, "apps": ["one", "two"]})
    assert store.get_app("one").deleting and store.get_app("two").deleting and kicked == ["one", "two"]
    assert call(api, "DELETE", "/v1/gitsources/fleet", headers=auth) == (404, {"error": "gitsource 'fleet' not found"})
