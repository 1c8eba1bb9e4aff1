"""The apps one commit declares: export it, load every manifest under the source's path,
validate them all, pack each app's source folder.

Any problem anywhere fails the whole commit with one SpecError whose sentences
name the file inside the repository, the line and the reason, exactly as
``corral apply`` would for the same files.
"""
import os
import shutil
import tempfile

from corral.source import pack_source
from corral.spec import SpecError, load_paths
from reconciler.gitops.plan import Wanted


def _relabel(sentence, root):
    """A loader sentence about ``root/apps/x.yaml`` as one about ``apps/x.yaml``."""
    return sentence.replace(root + os.sep, "")


def _source_folder(doc, root):
    """The absolute folder of an app's ``spec.source``; SpecError when it is not a folder in the repository."""
    source = doc.doc["spec"]["source"]
    where = f"{_relabel(doc.file, root)}:{doc.line}: spec.source"
    if not isinstance(source, str):
        raise SpecError([f"{where}: a git source inside a GitSource is not supported; use a folder of the repository"])
    folder = os.path.normpath(os.path.join(doc.base_dir, source))
    if folder != root and not folder.startswith(root + os.sep):
        raise SpecError([f"{where}: folder {source!r} is outside the repository"])
    if not os.path.isdir(folder):
        raise SpecError([f"{where}: folder {os.path.relpath(folder, root)!r} does not exist in the commit"])
    return folder


def load_tree(root, path):
    """``(wanted, archives)`` for the checked-out tree at ``root``: the Apps under ``path`` and
    ``{digest: gzip'd tar}`` of their sources. Raises SpecError naming files relative to ``root``."""
    root = os.path.realpath(root)
    folder = os.path.normpath(os.path.join(root, path))
    if not os.path.isdir(folder):
        raise SpecError([f"{path}: no such folder in the commit"])
    if not any(f.endswith((".yaml", ".yml")) for _, _, files in os.walk(folder) for f in files):
        return [], {}  # a commit with no manifest declares no app (plan_sync guards against deleting all)
    try:
        docs = load_paths([folder])
    except SpecError as e:
        raise SpecError([_relabel(s, root) for s in e.errors]) from None
    wanted, archives, packed = [], {}, {}
    for d in docs:
        if d.kind != "App":
            raise SpecError([f"{_relabel(d.file, root)}:{d.line}: kind {d.kind} is not applied from a "
                             f"repository: a GitSource holds apps only"])
        src = _source_folder(d, root)
        if src not in packed:
            try:
                packed[src] = pack_source(src)
            except ValueError as e:
                raise SpecError([f"{_relabel(d.file, root)}:{d.line}: spec.source: "
                                 f"{_relabel(str(e), root)}"]) from None
            archives[packed[src][0]] = packed[src][1]
        wanted.append(Wanted(d.name, d.doc["metadata"].get("labels") or {}, d.doc["spec"], packed[src][0],
                             _relabel(d.file, root)))
    return wanted, archives


def load_commit(repos, url, commit, path, scratch_dir=None):
    """The apps and source archives of ``commit`` (see :func:`load_tree`); the export is removed after."""
    work = tempfile.mkdtemp(prefix="corral-gitops-", dir=scratch_dir)
    try:
        repos.export(url, commit, work)
        return load_tree(work, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
