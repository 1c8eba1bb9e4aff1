"""Git sources: a real repository, cloned with the git command at the commit a ref names, packed like a folder."""
import os
import subprocess

import pytest

from corral.gitsource import GitSourceError, export_git_source
from corral.source import pack_source


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                                   GIT_COMMITTER_EMAIL="t@t")).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with two commits on main (the app's folder is apps/hello) and a tag on the first."""
    repo = tmp_path / "repo"
    (repo / "apps" / "hello").mkdir(parents=True)
    git(repo.parent, "init", "--quiet", "-b", "main", str(repo))
    (repo / "apps" / "hello" / "app.py").write_text("VERSION = 1\n")
    (repo / "apps" / "hello" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "apps" / "hello" / "run.sh", 0o755)
    (repo / "README").write_text("top\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "one")
    git(repo, "tag", "v1")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "apps" / "hello" / "app.py").write_text("VERSION = 2\n")
    git(repo, "commit", "--quiet", "-am", "two")
    return repo, first, git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("ref, which", [("main", 2), ("v1", 1), (None, 2), ("first-commit", 1)],
                         ids=["branch", "tag", "default-head", "commit"])
def test_the_ref_names_the_commit_that_is_exported(tmp_path, repo, ref, which):
    path, first, second = repo
    ref = first if ref == "first-commit" else ref
    source = {"git": str(path), "path": "apps/hello", **({"ref": ref} if ref else {})}
    folder, commit = export_git_source(source, str(tmp_path / "out"))
    assert commit == (first if which == 1 else second)
    assert sorted(os.listdir(folder)) == ["app.py", "run.sh"]
    assert open(os.path.join(folder, "app.py")).read() == f"VERSION = {which}\n"
    assert os.access(os.path.join(folder, "run.sh"), os.X_OK), "file modes are kept"


def test_the_export_packs_to_the_same_digest_as_the_checked_out_folder(tmp_path, repo):
    path, _, _ = repo
    folder, _ = export_git_source({"git": str(path), "ref": "main", "path": "apps/hello"}, str(tmp_path / "out"))
    assert pack_source(folder)[0] == pack_source(str(path / "apps" / "hello"))[0]


def test_an_unknown_ref_is_one_sentence_naming_it(tmp_path, repo):
    with pytest.raises(GitSourceError, match=r"ref 'nope' names no branch, tag or commit"):
        export_git_source({"git": str(repo[0]), "ref": "nope"}, str(tmp_path / "out"))


def test_a_missing_path_is_named(tmp_path, repo):
    with pytest.raises(GitSourceError, match="cannot export apps/nope"):
        export_git_source({"git": str(repo[0]), "path": "apps/nope"}, str(tmp_path / "out"))


def test_an_unreachable_repository_is_named(tmp_path):
    with pytest.raises(GitSourceError, match=f"cloning {tmp_path}/none failed"):
        export_git_source({"git": str(tmp_path / "none")}, str(tmp_path / "out"))


@pytest.mark.parametrize("path", ["../x", "/etc", "a/../../x"])
def test_a_path_leaving_the_repository_is_refused(tmp_path, repo, path):
    with pytest.raises(GitSourceError, match="must be relative and stay inside the repository"):
        export_git_source({"git": str(repo[0]), "path": path}, str(tmp_path / "out"))
