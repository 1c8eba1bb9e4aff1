"""Load the manifests of one apply: files, folders or stdin, into checked documents.

Every problem in every file is collected, each as one sentence naming the
file, the line and the field, and they are raised together: one bad document
rejects the whole apply. The loader writes nothing anywhere.
"""
import dataclasses
import os

from .errors import SpecError
from .quantities import format_size
from .model import check_document, document_name, field_text
from .yamlread import YamlProblem, read_documents

MAX_MANIFEST_BYTES = 1 << 20
STDIN = "-"
STDIN_LABEL = "<stdin>"
SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class Document:
    """One checked document of an apply.

    ``doc`` is the whole document with schema defaults filled in; ``file`` is
    the path as given (``<stdin>`` for ``-``), ``line`` the 1-based line where
    the document starts, and ``base_dir`` the absolute folder a relative
    ``spec.source`` is resolved against (the manifest's folder; the current
    folder for stdin).
    """

    kind: str
    name: str
    doc: dict
    file: str
    line: int
    base_dir: str


def _manifest_files(path, errors):
    """The manifest files ``path`` names: itself, or every *.yaml/*.yml below it, sorted."""
    if os.path.isdir(path):
        found = []
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            found.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(SUFFIXES))
        if not found:
            errors.append(f"{path}: the folder holds no *.yaml or *.yml files")
        return found
    if not os.path.exists(path):
        errors.append(f"{path}: no such file or folder")
        return []
    return [path]


def _read_file(path, errors):
    """The text of one manifest file, or None after recording why it cannot be read."""
    try:
        size = os.stat(path).st_size
        if size > MAX_MANIFEST_BYTES:
            errors.append(f"{path}: manifest is {format_size(size)}, over the 1 MiB limit")
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        errors.append(f"{path}: cannot be read ({e.strerror or e})")
        return None
    if len(data) > MAX_MANIFEST_BYTES:  # grew since stat
        errors.append(f"{path}: manifest is over the 1 MiB limit")
        return None
    return _decode(path, data, errors)


def _decode(label, data, errors):
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        errors.append(f"{label}: is not UTF-8 text (bad byte at offset {e.start})")
        return None


def _read_stdin(stdin, errors):
    if stdin is None:
        errors.append(f"{STDIN}: stdin was named but there is no input to read")
        return None
    text = stdin.read() if hasattr(stdin, "read") else stdin
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    if len(data) > MAX_MANIFEST_BYTES:
        errors.append(f"{STDIN_LABEL}: manifest is {format_size(len(data))}, over the 1 MiB limit")
        return None
    return _decode(STDIN_LABEL, data, errors)


def _documents_of(label, base_dir, text, errors, named):
    """Check every document of one manifest's text; append sentences to ``errors``.

    ``named`` gets ``(kind, name, file, line)`` of every document that has a
    kind and a name, valid or not, for the duplicate check.
    """
    try:
        raws = read_documents(text, MAX_MANIFEST_BYTES)
    except YamlProblem as e:
        errors.append(f"{label}:{e.line}: {e.message}" if e.line else f"{label}: {e.message}")
        return []
    if not raws:
        errors.append(f"{label}: holds no documents")
        return []
    out = []
    for raw in raws:
        kind, name = raw.value.get("kind") if isinstance(raw.value, dict) else None, document_name(raw.value)
        if isinstance(kind, str) and name:
            named.append((kind, name, label, raw.line))
        info, filled, problems = check_document(raw.value)
        if problems:
            located = sorted(((raw.line_of(p.where), p) for p in problems), key=lambda pair: pair[0])
            for line, p in located:
                field = field_text(p.field)
                errors.append(f"{label}:{line}: {field}: {p.message}" if field else f"{label}:{line}: {p.message}")
            continue
        out.append(Document(info.kind, document_name(filled), filled, label, raw.line, base_dir))
    return out


def load_paths(paths, stdin=None):
    """Load and check every document that ``paths`` name; return them in order as Documents.

    A path is a file, a folder (every *.yaml/*.yml below it, recursively,
    sorted) or ``-`` (the text of ``stdin``: a string or a readable text
    file). Raises SpecError listing every problem found; names must be unique
    per kind across the whole apply.
    """
    errors = []
    documents = []
    named = []
    seen_files = set()
    stdin_read = False
    for path in paths:
        if path == STDIN:
            if stdin_read:
                errors.append(f"{STDIN}: stdin can be named only once")
                continue
            stdin_read = True
            text = _read_stdin(stdin, errors)
            if text is not None:
                documents.extend(_documents_of(STDIN_LABEL, os.getcwd(), text, errors, named))
            continue
        for file in _manifest_files(path, errors):
            real = os.path.realpath(file)
            if real in seen_files:
                continue  # named twice (a file and its folder): read once
            seen_files.add(real)
            text = _read_file(file, errors)
            if text is not None:
                base_dir = os.path.dirname(os.path.abspath(file))
                documents.extend(_documents_of(file, base_dir, text, errors, named))
    if not paths:
        errors.append("no manifest was named")
    first = {}
    for kind, name, file, line in named:
        if (kind, name) in first:
            earlier_file, earlier_line = first[kind, name]
            errors.append(f"{file}:{line}: {kind.lower()} {name!r} is defined twice"
                          f" (first in {earlier_file}:{earlier_line})")
        else:
            first[kind, name] = (file, line)
    if errors:
        raise SpecError(errors)
    return documents
