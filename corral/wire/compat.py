"""Forward compatibility of bus messages: a field a newer peer adds is let through, bounded, and dropped.

The schemas under ``schemas/wire/`` are written closed (``"additionalProperties":
false``): each says exactly what this version sends and reads. A peer one
minor release newer may send a field this one does not know; refusing the
whole message for it would make every upgrade a flag day. So the bus checks
bodies against an *opened* copy of each schema (:func:`opened`): a closed
object takes fields it does not declare, at most :data:`MAX_UNKNOWN` more
than it declares, each of them bounded (:data:`UNKNOWN_VALUE`); what it declares keeps its type,
pattern and limits. Then :func:`known_only` drops every undeclared field
before the handler sees the body, so an unknown field can change nothing:
it is not stored, shown, passed on or read.

Both are pure and never change their input.
"""
import copy

MAX_UNKNOWN = 16   # fields one object may carry beyond the number it declares
#: What an undeclared field's value may be: any JSON value, with strings, lists and objects bounded
#: (the envelope bounds the whole message at 8 MiB).
UNKNOWN_VALUE = {"maxLength": 4096, "maxItems": 256, "maxProperties": 64}


def opened(schema):
    """A copy of ``schema`` in which every closed object also takes undeclared fields, each within
    UNKNOWN_VALUE, up to MAX_UNKNOWN more fields than it declares; every declared field is checked
    as before."""
    out = copy.deepcopy(schema)
    _open(out)
    return out


def _open(node):
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            node["additionalProperties"] = dict(UNKNOWN_VALUE)
            declared = len(node.get("properties", {}))
            node["maxProperties"] = min(node.get("maxProperties", declared + MAX_UNKNOWN), declared + MAX_UNKNOWN)
        for key, value in node.items():
            if key not in ("enum", "const", "required", "default", "examples"):
                _open(value)
    elif isinstance(node, list):
        for item in node:
            _open(item)


def known_only(schema, value):
    """``value`` (which passed :func:`opened` of ``schema``) with every field that the closed
    ``schema`` does not declare left out, at every depth. A map (``additionalProperties`` a schema)
    keeps its keys; a free-form object (no ``properties``) is kept whole."""
    if isinstance(value, dict) and isinstance(schema, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return {k: known_only(props[k], v) for k, v in value.items() if k in props}
        return {k: known_only(props[k] if k in props else extra, v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        return [known_only(schema["items"], v) for v in value]
    return value
