"""What a valid document is: the kind table, schema checks, defaults, commands.

Pure: no files, no clock. :func:`check_document` is shared by the loader
(which turns each problem's path into a file and line) and by the server
(:func:`validate_document`, whose sentences name the document instead).
"""
import copy
import dataclasses
import difflib
import functools
import json
import shlex

import jsonschema

import schemas
from corral.hostnames import normalize_host, normalize_path

from .errors import SpecError
from .scheduled import backups_problems, fill_process_defaults, schedule_problems


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """A kind corral knows: the apiVersions it accepts and the schema that checks it."""

    kind: str
    api_versions: tuple
    schema: str  # name for schemas.load()

    @property
    def noun(self):
        """How sentences name a document of this kind (``app 'hello'``)."""
        return self.kind.lower()


KINDS = {}


def register_kind(kind, api_version, schema):
    """Make ``kind`` at ``api_version`` known, checked by ``schemas.load(schema)``."""
    known = KINDS.get(kind)
    versions = (known.api_versions if known else ()) + (api_version,)
    KINDS[kind] = KindInfo(kind, versions, schema)


register_kind("App", "corral/v1", "app")
register_kind("GitSource", "corral/v1", "gitsource")  # reconciler/gitops keeps the cluster equal to it


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a document.

    ``field`` is the path shown to the user; ``where`` is the path of the YAML
    node the problem sits on (an unknown key sits on the key itself, not on
    its parent), used to find a line.
    """

    field: tuple
    where: tuple
    message: str


def field_text(path):
    """``('spec', 'processes', 'web', 'command', 1)`` -> ``spec.processes.web.command[1]``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def show(value):
    """A value as a sentence quotes it: strings quoted, YAML words for true/false/null."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}
# Validators whose failure the subschema's own "errorMessage" explains better.
_OWN_MESSAGE = {"anyOf", "oneOf", "type", "pattern", "minLength", "maxLength"}


@functools.lru_cache(maxsize=None)
def _validator(schema_name):
    schema = schemas.load(schema_name)
    return jsonschema.Draft202012Validator(schema)


def _type_words(types):
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


def _problems_from(error):
    """Sentences for one jsonschema error (several for 'required' and 'additionalProperties')."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    kind = error.validator
    if "propertyNames" in error.relative_schema_path:
        # The error is about a key of the mapping at `path`, not a value.
        own = schema.get("errorMessage")
        text = own.replace("{value}", show(value)) if own and kind in _OWN_MESSAGE else error.message
        return [Problem(path, path + (value,), text)]
    own = schema.get("errorMessage")
    if own and kind in _OWN_MESSAGE:
        return [Problem(path, path, own.replace("{value}", show(value)))]
    if kind == "required":
        return [Problem(path, path, f"missing required field {name!r}")
                for name in error.validator_value if isinstance(value, dict) and name not in value]
    if kind == "additionalProperties":
        known = list(schema.get("properties", {}))
        out = []
        for key in value:
            if key in known:
                continue
            hint = difflib.get_close_matches(str(key), known, n=1)
            text = f"unknown field {show(key)}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            out.append(Problem(path, path + (key,), text))
        return out
    if kind in ("anyOf", "oneOf"):
        # Descend into the one branch whose type fits the value, if there is one.
        branches = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        fitting = [subs for subs in branches.values()
                   if not any(s.validator == "type" and not s.relative_path for s in subs)]
        if len(fitting) == 1:
            return [p for sub in fitting[0] for p in _problems_from(sub)]
        types = [b.get("type") for b in error.validator_value if isinstance(b, dict) and "type" in b]
        return [Problem(path, path, f"{show(value)} is not {_type_words([t for t in types])}")]
    if kind == "type":
        return [Problem(path, path, f"{show(value)} is not {_type_words(error.validator_value)}")]
    if kind == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return [Problem(path, path, f"{show(value)} is not one of {choices}")]
    if kind == "const":
        return [Problem(path, path, f"{show(value)} is not allowed here: the only value is {show(error.validator_value)}")]
    if kind in ("minProperties", "minItems"):
        return [Problem(path, path, "must not be empty")]
    return [Problem(path, path, error.message)]


def _kind_problems(doc):
    """The kind and apiVersion checks, before any schema applies; returns (KindInfo|None, problems)."""
    kind = doc.get("kind")
    if kind is None:
        return None, [Problem((), (), "missing required field 'kind'")]
    info = KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        known = ", ".join(sorted(KINDS))
        return None, [Problem(("kind",), ("kind",), f"unknown kind {show(kind)} (known: {known})")]
    version = doc.get("apiVersion")
    if version is None:
        return info, [Problem((), (), "missing required field 'apiVersion'")]
    if version not in info.api_versions:
        known = ", ".join(info.api_versions)
        return info, [Problem(("apiVersion",), ("apiVersion",),
                              f"unknown apiVersion {show(version)} for kind {kind} (known: {known})")]
    return info, []


def _resolve(schema, root):
    """A subschema with its local ``$ref`` merged in (the referring schema's own keys win)."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _fill_defaults(schema, value, root):
    """Fill ``default`` keywords into ``value`` in place, only inside objects that exist.

    ``spec.update`` and ``spec.placement`` themselves default to ``{}`` so that
    their policy values are always spelled out; ``health`` has no default, so
    its interval and timeout appear only when a check is given.
    """
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            sub = _resolve(sub, root)
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _fill_defaults(sub, value[name], root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    _fill_defaults(extra, item, root)
        for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
            branch = _resolve(branch, root)
            if branch.get("type") == "object":
                _fill_defaults(branch, value, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill_defaults(schema["items"], item, root)


def _rule_problems(info, doc):
    """Rules of a schema-valid document that JSON Schema cannot say."""
    if info.kind != "App":
        return []
    out = []
    spec = doc["spec"]
    for name, process in spec["processes"].items():
        command = process["command"]
        if isinstance(command, str):
            where = ("spec", "processes", name, "command")
            try:
                if not shlex.split(command):
                    out.append(Problem(where, where, "splits into no words: give the program to run"))
            except ValueError as e:
                out.append(Problem(where, where, f"cannot be split like a shell command ({str(e).lower()})"))
        out += [Problem(field, field, text) for field, text in schedule_problems(name, process)]
    out += [Problem(field, field, text) for field, text in backups_problems(spec)]
    redis = sorted(n for n, svc in (spec.get("services") or {}).items() if svc["type"] == "redis")
    if len(redis) > 1:
        where = ("spec", "services", redis[1])
        out.append(Problem(where, where, f"is a second redis service: an app has one Redis key prefix "
                                         f"({redis[0]} has it already)"))
    update = spec.get("update", {})
    if update.get("maxSurge") in (0, "0%") and update.get("maxUnavailable") in (0, "0%"):
        out.append(Problem(("spec", "update"), ("spec", "update"),
                           "maxSurge and maxUnavailable cannot both be 0: a rollout could never move"))
    return out + _route_problems(spec)


def _route_problems(spec):
    """What is wrong with ``spec.routes``: a host that is not a host name, a process that is
    not one of the app's with a port (or none named where several have one), a host and
    path given twice."""
    out, seen = [], set()
    ported = sorted(name for name, p in spec["processes"].items() if p.get("port"))
    for i, item in enumerate(spec.get("routes") or ()):
        where = ("spec", "routes", i)
        host = normalize_host(item["host"])
        if host is None or host.startswith("["):
            out.append(Problem(where + ("host",), where + ("host",),
                               f"{item['host']!r} is not a host name (like shop.example.com or *.example.com)"))
            continue
        process = item.get("process")
        if process is not None and process not in ported:
            out.append(Problem(where + ("process",), where + ("process",),
                               f"{process!r} is not a process of this app with port: true"
                               f" ({', '.join(ported) or 'it has none'})"))
        elif process is None and len(ported) != 1:
            out.append(Problem(where, where, "name the process to route to: the app has "
                                             f"{len(ported) or 'no'} process{'es' if len(ported) != 1 else ''} "
                                             "with port: true" + (f" ({', '.join(ported)})" if ported else "")))
        key = (host, normalize_path(item.get("path", "/")))
        if key in seen:
            out.append(Problem(where, where, f"host {host} and path {key[1]} are routed twice in this app"))
        seen.add(key)
    return out


def check_document(doc):
    """Check one document; return ``(kind_info, filled, problems)``.

    ``filled`` is a deep copy of ``doc`` with schema defaults filled in, or
    None when there are problems. Purely computational: no side effects, the
    input is not changed.
    """
    if not isinstance(doc, dict):
        return None, None, [Problem((), (), f"a document must be a mapping, not {_type_words(_json_type(doc))}")]
    info, problems = _kind_problems(doc)
    if problems:
        return info, None, problems
    validator = _validator(info.schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        for problem in _problems_from(error):
            if problem not in problems:
                problems.append(problem)
    if problems:
        return info, None, problems
    problems = _rule_problems(info, doc)
    if problems:
        return info, None, problems
    filled = copy.deepcopy(doc)
    _fill_defaults(validator.schema, filled, validator.schema)
    if info.kind == "App":
        for process in filled["spec"]["processes"].values():
            fill_process_defaults(process)
    return info, filled, []


def _json_type(value):
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


def document_name(doc):
    """The document's ``metadata.name`` when it is a string, else None."""
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def validate_document(doc):
    """The document with defaults filled in, for the server side.

    Raises SpecError whose sentences name the document and the field, e.g.
    ``app 'hello': spec.processes.web.instances: -1 is less than the minimum of 0``.
    """
    info, filled, problems = check_document(doc)
    if problems:
        noun = info.noun if info else "document"
        name = document_name(doc)
        label = f"{noun} {name!r}" if name else f"{noun} without a name"
        raise SpecError(
            f"{label}: {field_text(p.field)}: {p.message}" if p.field else f"{label}: {p.message}"
            for p in problems
        )
    return filled


def process_command(spec_process):
    """The argv of a process: a string command split like a shell (``shlex.split``), a list kept as is.

    ``$VARS`` are left in place: the node agent expands them per word from
    the instance's environment. Accepts the process mapping or the command
    itself; ValueError for a command that splits into nothing.
    """
    command = spec_process["command"] if isinstance(spec_process, dict) else spec_process
    argv = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
    if not argv:
        raise ValueError(f"command {show(command)} has no program to run")
    return argv
