"""Read YAML text into plain values, remembering the line of every field.

PyYAML's own constructors are not used for collections: building values from
the composed nodes here is what lets corral refuse what ``safe_load`` lets
through silently (a key given twice keeps the last value there) and count
alias expansion before a single value is built ("billion laughs"). Only the
tags of plain YAML are read; ``!!python/...`` and custom tags are errors.
"""
import dataclasses
import math

import yaml
from yaml.constructor import SafeConstructor

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MAP = _TAG + "map"
_SEQ = _TAG + "seq"
_MERGE = _TAG + "merge"
MAX_DEPTH = 100


class YamlProblem(Exception):
    """A problem in the YAML itself, at a 1-based ``line`` (None: the whole file)."""

    def __init__(self, line, message):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclasses.dataclass(frozen=True)
class RawDocument:
    """One non-empty document: its value, its first line, and the line of each field path."""

    value: object
    line: int
    lines: dict  # path tuple -> 1-based line of the key (mapping) or item (sequence)

    def line_of(self, path):
        """The line of ``path``, or of its nearest parent that has one."""
        path = tuple(path)
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, self.line)


def _short_tag(tag):
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _line(node):
    return node.start_mark.line + 1


def expanded_size(node, memo=None, active=None):
    """An estimate in bytes of ``node`` with every alias expanded: scalar text plus one per node.

    Memoized per node, so it costs one visit per distinct node even when the
    expansion is astronomically large. Raises YamlProblem on a recursive alias.
    """
    memo = {} if memo is None else memo
    active = set() if active is None else active
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise YamlProblem(_line(node), "an alias refers to the node that contains it (a recursive alias)")
    active.add(key)
    if isinstance(node, yaml.ScalarNode):
        size = len(node.value) + 1
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(expanded_size(item, memo, active) for item in node.value)
    else:
        size = 1 + sum(expanded_size(k, memo, active) + expanded_size(v, memo, active) for k, v in node.value)
    active.discard(key)
    memo[key] = size
    return size


class _Builder:
    """Builds plain values from nodes, recording lines and refusing what plain YAML does not allow."""

    def __init__(self):
        self.lines = {}
        self._scalars = SafeConstructor()

    def build(self, node, path, depth=0):
        if depth > MAX_DEPTH:
            raise YamlProblem(_line(node), f"the document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _TAG + "value":
                return node.value  # a plain "=" (YAML 1.1's value key): read as text
            if node.tag not in _SCALAR_TAGS:
                raise YamlProblem(_line(node), f"the tag {_short_tag(node.tag)} is not allowed: corral reads plain YAML only")
            value = self._scalars.construct_object(node, deep=True)
            if isinstance(value, float) and not math.isfinite(value):
                # .nan passes every minimum and maximum of a schema (each comparison is false)
                raise YamlProblem(_line(node), f"{node.value} is not a number corral accepts: numbers must be finite")
            return value
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise YamlProblem(_line(node), f"the tag {_short_tag(node.tag)} is not allowed: corral reads plain YAML only")
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = _line(item)
                items.append(self.build(item, path + (index,), depth + 1))
            return items
        if node.tag != _MAP:
            raise YamlProblem(_line(node), f"the tag {_short_tag(node.tag)} is not allowed: corral reads plain YAML only")
        return self._mapping(node, path, depth)

    def _mapping(self, node, path, depth):
        result, first_line, merges = {}, {}, []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(_line(key_node), "a mapping key must be a plain value, not a list or mapping")
            key = self.build(key_node, path, depth + 1)
            if key in first_line:
                where = f" in {_field(path)}" if path else ""
                raise YamlProblem(_line(key_node), f"the key {key!r}{where} is given twice (first on line {first_line[key]})")
            first_line[key] = _line(key_node)
            self.lines[path + (key,)] = _line(key_node)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        # Merge keys (<<: *base): explicit keys win, then earlier merged mappings.
        sources = []
        for merge in merges:
            sources.extend(merge.value if isinstance(merge, yaml.SequenceNode) else [merge])
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise YamlProblem(_line(source), "a merge key (<<) must name a mapping or a list of mappings")
            inner = _Builder()
            merged = inner._mapping(source, path, depth)
            for key, value in merged.items():
                if key not in result:
                    result[key] = value
                    for sub_path, line in inner.lines.items():
                        if sub_path[:len(path) + 1] == path + (key,):
                            self.lines[sub_path] = line
        return result


def _field(path):
    return ".".join(str(p) for p in path)


def read_documents(text, limit):
    """Every non-empty document in ``text`` as RawDocument, in order.

    Raises YamlProblem for a syntax error, a refused tag, a duplicate key, a
    non-scalar key, or when aliases expand the file past ``limit`` bytes.
    """
    loader = _Loader(text)
    documents = []
    budget = 0
    memo = {}
    try:
        while loader.check_node():
            node = loader.get_node()
            if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null":
                continue  # an empty document
            budget += expanded_size(node, memo)
            if budget > limit:
                raise YamlProblem(_line(node), f"aliases expand the manifest past the {limit // (1 << 20)} MiB limit")
            builder = _Builder()
            value = builder.build(node, ())
            builder.lines[()] = _line(node)
            documents.append(RawDocument(value, _line(node), builder.lines))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise YamlProblem(mark.line + 1 if mark else None, f"YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise YamlProblem(None, f"not readable as YAML: {e}") from None
    except RecursionError:
        raise YamlProblem(None, "the document is nested too deeply to read") from None
    finally:
        loader.dispose()
    return documents
