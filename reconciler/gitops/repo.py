"""The git command, run by argv with a timeout: fetch a branch into a local mirror, export a commit.

One bare mirror per URL under ``cache_dir``. git runs hardened
(:mod:`corral.git`); the URL comes after ``--`` so it can never be read as an option.
"""
import hashlib
import os

from corral.git import GitError, run_git  # noqa: F401  (GitError: what this module raises)
from corral.untar import UnsafeArchive, unpack


class GitRepos:
    """Mirrors of the repositories sources name, kept under ``cache_dir``."""

    def __init__(self, cache_dir, timeout=60.0, git="git"):
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.git = git

    def _run(self, args, what, mirror=None):
        return run_git((["-C", mirror] if mirror else []) + list(args), what, self.timeout, git=self.git)

    def mirror(self, url):
        """The bare mirror's folder for ``url`` (created empty when missing)."""
        path = os.path.join(self.cache_dir, hashlib.sha256(url.encode()).hexdigest()[:24] + ".git")
        if not os.path.isdir(path):
            os.makedirs(self.cache_dir, exist_ok=True)
            self._run(["init", "--bare", "--quiet", path], f"cannot make a mirror of {url}")
        return path

    def fetch(self, url, branch):
        """Fetch ``branch`` of ``url``; return the commit it points to (40 hex digits)."""
        mirror = self.mirror(url)
        ref = f"refs/corral/{branch}"
        self._run(["fetch", "--quiet", "--no-tags", "--force", "--", url, f"+refs/heads/{branch}:{ref}"],
                  f"fetching branch {branch!r} of {url} failed", mirror)
        out = self._run(["rev-parse", "--verify", "--quiet", ref + "^{commit}"],
                        f"branch {branch!r} of {url} names no commit", mirror)
        return out.decode().strip()

    def export(self, url, commit, dest):
        """Write the files of ``commit`` into the folder ``dest`` (made when missing)."""
        data = self._run(["archive", "--format=tar", commit], f"cannot export commit {commit[:12]} of {url}",
                         self.mirror(url))
        try:
            unpack(data, dest)
        except UnsafeArchive as e:
            raise GitError(f"commit {commit[:12]} of {url} cannot be used: {e}") from None

