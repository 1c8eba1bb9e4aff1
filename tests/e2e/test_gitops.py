"""GitOps end to end: `corral up`, a GitSource on a repository the test makes with the git
command; an app appears and a change rolls out, a broken commit fails with file, line and
reason and changes nothing, a hand change is reported OutOfSync and then healed, a deleted
file is pruned while a hand-applied app survives, and an empty commit is refused."""
import os
import subprocess

import pytest

from tests.e2e.cluster import FAST, UpCluster, wait_for

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")


class Repo:
    """A git repository of app manifests under ``apps/``, with one shared source folder."""

    def __init__(self, path):
        self.path = str(path)
        os.makedirs(os.path.join(self.path, "apps", "src"))
        with open(os.path.join(self.path, "apps", "src", "tiny.py"), "w") as f:
            f.write("print('tiny')\n")
        self.git("init", "-q", "-b", "main")

    def git(self, *args):
        subprocess.run(["git", "-C", self.path, *args], check=True, capture_output=True, env=GIT_ENV)

    def write_app(self, name, instances=1, extra=""):
        with open(os.path.join(self.path, "apps", f"{name}.yaml"), "w") as f:
            f.write(f"apiVersion: corral/v1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  source: ./src\n"
                    f"  processes:\n    web:\n      command: python -m http.server $PORT\n"
                    f"      instances: {instances}\n      port: true\n{extra}")

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-qm", message)


def source_manifest(path, repo, self_heal=True):
    with open(path, "w") as f:
        f.write(f"apiVersion: corral/v1\nkind: GitSource\nmetadata:\n  name: fleet\nspec:\n  url: {repo.path}\n"
                f"  path: apps\n  interval: 1s\n  selfHeal: {'true' if self_heal else 'false'}\n")
    return path


@pytest.fixture
def cluster(tmp_path):
    c = UpCluster(tmp_path, nodes=1, timings=dict(FAST, gitops_tick=0.2))
    yield c
    assert c.down() == 0, "corral up did not stop cleanly:\n" + c.tail()


def apps(cluster):
    return {a["name"]: a for a in cluster.json("get", "apps") if not a["deleting"]}


def test_a_repository_drives_the_cluster(cluster, tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write_app("g-one")
    repo.write_app("g-two")
    repo.commit("two apps")
    hand = tmp_path / "hand"
    os.makedirs(hand / "src")
    (hand / "src" / "tiny.py").write_text("print('hand')\n")
    (hand / "hand.yaml").write_text("apiVersion: corral/v1\nkind: App\nmetadata:\n  name: g-hand\nspec:\n"
                                    "  source: ./src\n  processes:\n    web:\n      command: python -m http.server $PORT\n")
    cluster.corral("apply", "-f", str(hand / "hand.yaml"))
    source = source_manifest(str(tmp_path / "source.yaml"), repo)
    assert "gitsource/fleet created" in cluster.corral("apply", "-f", source).stdout

    # The repository's apps appear, owned by the source at its commit.
    wait_for("the repository's two apps", lambda: {"g-one", "g-two"} <= set(apps(cluster)))
    owner = apps(cluster)["g-one"]["owner"]
    assert owner.startswith("gitsource/fleet@") and apps(cluster)["g-hand"]["owner"] is None
    [fleet] = cluster.json("get", "gitsources")
    assert fleet["syncedCommit"] == owner.split("@")[1] and fleet["lastError"] is None

    # A pushed change rolls out: two ready instances.
    repo.write_app("g-two", instances=2)
    repo.commit("scale two")
    wait_for("g-two scaled to 2 ready instances", lambda: len(
        [i for i in cluster.instances("g-two") if i["ready"]]) == 2, timeout=120)

    # A broken manifest fails the commit as a whole; the cluster keeps the last good one.
    before = {n: (a["generation"], a["spec"]) for n, a in apps(cluster).items()}
    repo.write_app("g-one", instances=3)
    repo.write_app("g-two", instances=2, extra="      instnaces: 5\n")
    repo.commit("broken")
    wait_for("the broken commit's error", lambda: cluster.json("get", "gitsources", "fleet")["lastError"])
    error = cluster.json("get", "gitsources", "fleet")["lastError"]
    assert "apps/g-two.yaml:12: spec.processes.web: unknown field 'instnaces'" in error
    assert {n: (a["generation"], a["spec"]) for n, a in apps(cluster).items()} == before
    described = cluster.corral("describe", "gitsource", "fleet").stdout
    assert "instnaces" in described and "SyncFailed" in described
    repo.write_app("g-one")
    repo.write_app("g-two", instances=2)
    repo.commit("fixed")
    out = cluster.corral("sync", "fleet").stdout
    assert "synced at commit" in out

    # A hand change of an owned app: OutOfSync with the field, while selfHeal is off ...
    cluster.corral("apply", "-f", source_manifest(str(tmp_path / "source.yaml"), repo, self_heal=False))
    cluster.corral("sync", "fleet")
    changed = tmp_path / "changed"
    os.makedirs(changed)
    subprocess.run(["cp", "-r", os.path.join(repo.path, "apps", "src"), str(changed / "src")], check=True)
    repo_manifest = open(os.path.join(repo.path, "apps", "g-one.yaml")).read()
    (changed / "g-one.yaml").write_text(repo_manifest.replace("instances: 1", "instances: 2"))
    cluster.corral("apply", "-f", str(changed / "g-one.yaml"))
    cluster.corral("sync", "fleet")
    state = {a["name"]: a for a in cluster.json("get", "gitsources", "fleet")["apps"]}["g-one"]
    assert state["state"] == "OutOfSync"
    assert state["diff"] == ["spec.processes.web.instances: live 2, git 1"]
    assert apps(cluster)["g-one"]["owner"].startswith("gitsource/fleet@")
    # ... then healed when selfHeal is on, with an event naming who changed what.
    cluster.corral("apply", "-f", source_manifest(str(tmp_path / "source.yaml"), repo, self_heal=True))
    cluster.corral("sync", "fleet")
    assert apps(cluster)["g-one"]["spec"]["processes"]["web"]["instances"] == 1
    healed = [e for e in cluster.json("get", "events", "g-one") if e["reason"] == "SelfHealed"]
    assert healed and "changed by token/up-admin" in healed[-1]["message"] and "instances: live 2, git 1" in healed[-1]["message"]

    # A deleted file is pruned; the hand-applied app survives.
    repo.git("rm", "-q", "apps/g-one.yaml")
    repo.commit("drop one")
    cluster.corral("sync", "fleet")
    wait_for("g-one pruned", lambda: "g-one" not in apps(cluster))
    assert {"g-two", "g-hand"} <= set(apps(cluster))

    # A commit that deletes every app the source owns is refused (allowEmpty is off).
    repo.git("rm", "-q", "apps/g-two.yaml")
    repo.commit("drop all")
    r = cluster.corral("sync", "fleet", check=False)
    assert r.returncode == 1 and "refusing to delete all 1 apps" in r.stderr
    assert "g-two" in apps(cluster)

    # Deleting the source keeps its app running, managed by hand from then on ...
    out = cluster.corral("delete", "gitsource", "fleet").stdout
    assert "gitsource/fleet deleted; its apps keep running, managed by hand: g-two" in out
    assert cluster.json("get", "gitsources") == []
    assert apps(cluster)["g-two"]["owner"] is None
    assert len([i for i in cluster.instances("g-two") if i["ready"]]) == 2
    # ... while `delete -f` of the source's manifest with --cascade takes its apps with it.
    repo.write_app("g-two", instances=2)
    repo.commit("two again")
    cluster.corral("apply", "-f", source)
    wait_for("g-two adopted again", lambda: (apps(cluster)["g-two"]["owner"] or "").startswith("gitsource/fleet@"))
    out = cluster.corral("delete", "-f", source, "--cascade").stdout
    assert "gitsource/fleet deleted with its apps: g-two" in out and "app/g-two deleted" in out
    assert "g-two" not in apps(cluster) and "g-hand" in apps(cluster)
