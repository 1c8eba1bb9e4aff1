"""JSON Schemas shipped with corral: the app spec and the bodies of wire messages.

They are data, read through :func:`load` so that an installed wheel finds them
the same way a checkout does.
"""
import functools
import json
from importlib import resources


@functools.lru_cache(maxsize=None)
def load(name):
    """Return the parsed schema ``name`` (e.g. ``"app"`` or ``"wire/report"``)."""
    path = resources.files(__name__).joinpath(*f"{name}.schema.json".split("/"))
    return json.loads(path.read_text(encoding="utf-8"))
