"""An app's ``spec.source: {git: URL, ref: REF, path: SUBDIR}``: cloned with the git command at an exact commit.

The client resolves the ref (a branch, a tag or a commit) to one commit,
exports that commit's ``path`` into a folder and packs it like any source
folder (:func:`corral.source.pack_source`), so the builder and the store see
a content-addressed archive and the commit is what the user is told. git
runs hardened (:mod:`corral.git`); the URL comes after ``--``.
"""
import os
import tempfile

from corral.git import GitError, run_git
from corral.untar import UnsafeArchive, unpack

DEFAULT_REF = "HEAD"
GitSourceError = GitError   # (the name callers of this module know)


def export_git_source(source, dest, timeout=120.0):
    """Export ``source`` (``{"git", "ref", "path"}``) into the folder ``dest``; return ``(folder, commit)``.

    ``folder`` is ``dest/path`` (the app's source), ``commit`` the 40-hex
    commit the ref named. Raises GitSourceError naming the URL and the ref.
    """
    url, ref, path = source["git"], source.get("ref") or DEFAULT_REF, source.get("path") or ""
    if os.path.isabs(path) or ".." in path.replace("\\", "/").split("/"):
        raise GitSourceError(f"git source {url}: path {path!r} must be relative and stay inside the repository")
    with tempfile.TemporaryDirectory(prefix="corral-git-") as clone:
        run_git(["clone", "--quiet", "--no-checkout", "--", url, clone], f"cloning {url} failed", timeout)
        commit = None
        for candidate in (ref, f"origin/{ref}"):
            try:
                commit = run_git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], "", timeout,
                              cwd=clone).decode().strip()
                break
            except GitSourceError:
                continue
        if not commit:
            raise GitSourceError(f"git source {url}: ref {ref!r} names no branch, tag or commit")
        data = run_git(["archive", "--format=tar", commit, "--", *([path] if path else [])],
                    f"git source {url}: cannot export {path or 'the repository'} at {commit[:12]}", timeout, cwd=clone)
    try:
        unpack(data, dest)
    except UnsafeArchive as e:
        raise GitSourceError(f"git source {url} at {commit[:12]}: {e}") from None
    folder = os.path.normpath(os.path.join(dest, path))
    if not os.path.isdir(folder):
        raise GitSourceError(f"git source {url}: {path!r} is not a folder at commit {commit[:12]}")
    return folder, commit
