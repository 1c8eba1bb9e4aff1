"""Credentials in git URLs are never shown: GitSource JSON, git errors (with git's own words, which
may repeat the URL), and so sync errors, events and logs (corral.secrets.redact_urls)."""
import types

import pytest

from corral.gitsource import GitSourceError, export_git_source
from corral.secrets import redact_urls
from reconciler.gitops.repo import GitRepos
from reconciler.gitops.routes import gitsource_json

TOKEN = "ghp_s3cr3tT0ken"


@pytest.mark.parametrize("text, shown", [
    (f"https://alice:{TOKEN}@git.example.com/shop.git", "https://<redacted>@git.example.com/shop.git"),
    (f"fetch of https://{TOKEN}@github.com/o/r failed", "fetch of https://<redacted>@github.com/o/r failed"),
    ("https://git.example.com/shop.git", "https://git.example.com/shop.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("/srv/repos/shop.git", "/srv/repos/shop.git"),
    (None, None),
], ids=["user-and-token", "token-as-user", "no-credentials", "scp-like-ssh", "a-path", "none"])
def test_redact_urls(text, shown):
    assert redact_urls(text) == shown


def test_a_git_fetch_that_fails_does_not_say_the_token(tmp_path):
    url = f"https://alice:{TOKEN}@127.0.0.1:1/shop.git"   # nothing listens on port 1: git fails at once
    with pytest.raises(Exception) as caught:
        GitRepos(str(tmp_path), timeout=30).fetch(url, "main")
    assert TOKEN not in str(caught.value) and "https://<redacted>@127.0.0.1:1/shop.git" in str(caught.value)


def test_a_git_source_that_fails_does_not_say_the_token(tmp_path):
    with pytest.raises(GitSourceError) as caught:
        export_git_source({"git": f"https://{TOKEN}@127.0.0.1:1/shop.git"}, str(tmp_path / "out"), timeout=30)
    assert TOKEN not in str(caught.value)


def test_gitsource_json_shows_the_url_without_its_credentials():
    rec = types.SimpleNamespace(name="fleet", labels={}, generation=1, created_at=0.0, sync_requested_at=None,
                                spec={"url": f"https://alice:{TOKEN}@git.example.com/fleet.git", "branch": "main",
                                      "path": "apps"},
                                status={"lastError": f"fetching branch 'main' of https://alice:{TOKEN}@git.example.com"
                                                     "/fleet.git failed: could not resolve host"})
    shown = gitsource_json(rec)
    assert TOKEN not in repr(shown)
    assert shown["url"] == shown["spec"]["url"] == "https://<redacted>@git.example.com/fleet.git"
