"""The app spec: loading manifests with file-and-line errors, validating documents, reading units.

``load_paths`` is what ``corral apply`` calls; ``validate_document`` is what
the API server calls on a document that arrived without its file. Both fill
in the schema's defaults. See ``schemas/app.schema.json`` and APP_SPEC.md.
"""
import importlib

# name -> the module that holds it, imported on first use: reading a duration must not load
# the validator (jsonschema, yaml), which read-only CLI verbs never need
_HOME = {"SpecError": "errors", "Document": "loader", "load_paths": "loader", "KINDS": "model",
         "process_command": "model", "register_kind": "model", "validate_document": "model",
         "format_duration": "quantities", "parse_cpu": "quantities", "parse_duration": "quantities",
         "parse_memory": "quantities", "parse_scale": "quantities", "rollout_limits": "quantities"}


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


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
