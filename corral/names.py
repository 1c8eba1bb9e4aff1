"""The patterns of the names that travel on the bus and become paths on a node (pure).

An agent joins an instance id into ``logs/<id>`` and a cgroup path, an app name
into a system user's name and ``home/<user>``, a layer id into the images
folder, often as root. So each is held to its pattern before any path is built
from it: the wire schemas (``schemas/wire/assign``, ``exec_open``,
``logs_open``) carry the same patterns (a unit test keeps them equal), and the
agent checks again where it builds paths (:func:`bad_assignment`,
:func:`bad_instance_id`), so that a body that reached it another way is held to
them too.

- app and process names: DNS labels (docs/APP_SPEC.md), at most 63 characters;
- instance ids: what the reconciler makes (``<app>-<process>-<hex>``, ``reconciler.loop.new_instance_id``):
  lowercase letters, digits and inner ``-``, at most 200 characters;
- layer ids: ``sha256:`` and 64 lowercase hex digits (image ids too, checked by
  :func:`corral.image_layout.image_hex` where their folder is named).

None of them can hold ``/``, ``.``, a NUL or an upper-case letter, so none can
name a parent folder, an absolute path or another instance's folder.
"""
import re

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
INSTANCE_ID = r"^[a-z0-9]([-a-z0-9]{0,198}[a-z0-9])?$"
CONTENT_ID = r"^sha256:[0-9a-f]{64}$"

_DNS_LABEL = re.compile(DNS_LABEL)
_INSTANCE_ID = re.compile(INSTANCE_ID)
_CONTENT_ID = re.compile(CONTENT_ID)


def _fits(pattern, value):
    # fullmatch: ``$`` alone would let a trailing newline through
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def bad_instance_id(value):
    """One sentence saying why ``value`` is not an instance id, or None when it is one."""
    if _fits(_INSTANCE_ID, value):
        return None
    return f"instance id {value!r:.80} is not lowercase letters, digits and inner '-' (at most 200)"


def bad_assignment(entry):
    """One sentence naming the first field of an assign's instance ``entry`` that does not fit its
    pattern (id, app, process, a layer's id), or None when every one fits. (The image id is
    checked where its folder is named, :func:`corral.image_layout.image_hex`.)"""
    if not isinstance(entry, dict):
        return "an assigned instance is not an object"
    why = bad_instance_id(entry.get("id"))
    if why:
        return why
    for field in ("app", "process"):  # a missing field is the schema's to refuse
        if field in entry and not _fits(_DNS_LABEL, entry[field]):
            return f"{field} name {entry[field]!r:.80} of instance {entry['id']} is not a DNS label"
    for layer in (entry.get("artifact") or {}).get("layers") or []:
        if not _fits(_CONTENT_ID, (layer or {}).get("id")):
            return f"a layer id of instance {entry['id']} is not sha256:<64 hex digits>"
    return None
