"""The git command, run by argv with a timeout: fetch a branch into a local mirror, export a commit.

One bare mirror per URL under ``cache_dir``. Nothing here goes through a
shell; the URL comes after ``--`` so it can never be read as an option, the
``ext::`` transport (which runs commands) is refused, and git never prompts.
"""
import hashlib
import os
import subprocess

from corral.secrets import redact_urls
from corral.untar import UnsafeArchive, unpack


class GitError(Exception):
    """A git command failed or timed out; the message is one sentence, credentials in URLs redacted."""

    def __init__(self, message):
        super().__init__(redact_urls(message))


_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true", "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1"}
_SAFE = ["-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null"]


class GitRepos:
    """Mirrors of the repositories sources name, kept under ``cache_dir``."""

    def __init__(self, cache_dir, timeout=60.0, git="git"):
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.git = git

    def _run(self, args, what, mirror=None):
        argv = [self.git, *_SAFE] + (["-C", mirror] if mirror else []) + list(args)
        env = dict(os.environ, **_ENV)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise GitError(f"{what}: git did not finish within {self.timeout:g}s") from None
        except OSError as e:
            raise GitError(f"{what}: cannot run git ({e.strerror or e})") from None
        if done.returncode:
            raise GitError(f"{what}: {_reason(done.stderr, done.returncode)}")
        return done.stdout

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


def _reason(stderr, code):
    """The first ``fatal:``/``error:`` line of git's stderr (its cause), else its last line."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix):]
    return lines[-1] if lines else f"git exited with status {code}"
