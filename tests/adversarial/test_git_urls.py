"""A hostile git URL in an app's source or a GitSource: git runs no command it names, reads no
option from it, and the refusal is one sentence (both runners: the client's export and the
leader's mirrors go through corral.git)."""
import pytest

from corral.git import GitError
from corral.gitsource import export_git_source
from reconciler.gitops.repo import GitRepos


def hostile_urls(marker):
    return [f"ext::sh -c touch% {marker}",                  # the ext transport runs a command
            f"--upload-pack=touch {marker}",                 # an option where a URL should be
            f"-u touch {marker}"]


def runners(tmp_path):
    return {"client export": lambda url: export_git_source({"git": url}, str(tmp_path / "out"), timeout=30),
            "leader mirror": lambda url: GitRepos(str(tmp_path / "mirrors"), timeout=30).fetch(url, "main")}


@pytest.mark.parametrize("runner", ["client export", "leader mirror"])
@pytest.mark.parametrize("kind", range(3), ids=["ext-transport", "upload-pack-option", "short-option"])
def test_a_hostile_url_runs_nothing_and_is_refused_in_one_sentence(tmp_path, runner, kind):
    marker = tmp_path / "ran"
    url = hostile_urls(marker)[kind]
    with pytest.raises(GitError) as caught:
        runners(tmp_path)[runner](url)
    assert not marker.exists(), f"git ran what {url!r} named"
    assert "\n" not in str(caught.value)
