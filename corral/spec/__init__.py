"""The app spec: loading manifests with file-and-line errors, validating documents, reading units.

``load_paths`` is what ``corral apply`` calls; ``validate_document`` is what
the API server calls on a document that arrived without its file. Both fill
in the schema's defaults. See ``schemas/app.schema.json`` and APP_SPEC.md.
"""
from .errors import SpecError
from .loader import Document, load_paths
from .model import KINDS, process_command, register_kind, validate_document
from .quantities import format_duration, parse_cpu, parse_duration, parse_memory, parse_scale, rollout_limits

__all__ = [
    "Document",
    "KINDS",
    "SpecError",
    "format_duration",
    "load_paths",
    "parse_cpu",
    "parse_duration",
    "parse_memory",
    "parse_scale",
    "process_command",
    "register_kind",
    "rollout_limits",
    "validate_document",
]
