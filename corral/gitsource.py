"""An app's ``spec.source: {git: URL, ref: REF, path: SUBDIR}``: cloned with the git command at an exact commit.

The client resolves the ref (a branch, a tag or a commit) to one commit,
exports that commit's ``path`` into a folder and packs it like any source
folder (:func:`corral.source.pack_source`), so the builder and the store see
a content-addressed archive and the commit is what the user is told. git
runs by argv, never through a shell, never prompting; the URL comes after
``--``; the ``ext::`` transport (which runs commands) is refused.
"""
import os
import subprocess
import tempfile

from corral.secrets import redact_urls
from corral.untar import UnsafeArchive, unpack

DEFAULT_REF = "HEAD"
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true", "LC_ALL": "C"}
_SAFE = ["-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null"]


class GitSourceError(Exception):
    """A git source could not be fetched or exported; the message is one sentence, credentials in
    URLs redacted."""

    def __init__(self, message):
        super().__init__(redact_urls(message))


def _git(args, what, timeout, cwd=None):
    try:
        done = subprocess.run(["git", *_SAFE, *args], capture_output=True, timeout=timeout, cwd=cwd,
                              env=dict(os.environ, **_ENV), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GitSourceError(f"{what}: git did not finish within {timeout:g}s") from None
    except OSError as e:
        raise GitSourceError(f"{what}: cannot run git ({e.strerror or e})") from None
    if done.returncode:
        lines = [ln.strip() for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        reason = next((ln.split(": ", 1)[1] for ln in lines if ln.startswith(("fatal: ", "error: "))),
                      lines[-1] if lines else f"git exited with status {done.returncode}")
        raise GitSourceError(f"{what}: {reason}")
    return done.stdout


def export_git_source(source, dest, timeout=120.0):
    """Export ``source`` (``{"git", "ref", "path"}``) into the folder ``dest``; return ``(folder, commit)``.

    ``folder`` is ``dest/path`` (the app's source), ``commit`` the 40-hex
    commit the ref named. Raises GitSourceError naming the URL and the ref.
    """
    url, ref, path = source["git"], source.get("ref") or DEFAULT_REF, source.get("path") or ""
    if os.path.isabs(path) or ".." in path.replace("\\", "/").split("/"):
        raise GitSourceError(f"git source {url}: path {path!r} must be relative and stay inside the repository")
    with tempfile.TemporaryDirectory(prefix="corral-git-") as clone:
        _git(["clone", "--quiet", "--no-checkout", "--", url, clone], f"cloning {url} failed", timeout)
        commit = None
        for candidate in (ref, f"origin/{ref}"):
            try:
                commit = _git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], "", timeout,
                              cwd=clone).decode().strip()
                break
            except GitSourceError:
                continue
        if not commit:
            raise GitSourceError(f"git source {url}: ref {ref!r} names no branch, tag or commit")
        data = _git(["archive", "--format=tar", commit, "--", *([path] if path else [])],
                    f"git source {url}: cannot export {path or 'the repository'} at {commit[:12]}", timeout, cwd=clone)
    try:
        unpack(data, dest)
    except UnsafeArchive as e:
        raise GitSourceError(f"git source {url} at {commit[:12]}: {e}") from None
    folder = os.path.normpath(os.path.join(dest, path))
    if not os.path.isdir(folder):
        raise GitSourceError(f"git source {url}: {path!r} is not a folder at commit {commit[:12]}")
    return folder, commit
