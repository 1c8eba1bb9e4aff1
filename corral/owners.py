"""Who owns an app: nobody (applied by hand) or a GitSource at a commit, ``gitsource/NAME@COMMIT``.

Pure: the store checks ownership in its transactions and the GitOps plan decides with it.
"""
from typing import Optional


def owner_source(owner: Optional[str]) -> Optional[str]:
    """The ``gitsource/NAME`` part of an app's owner (``gitsource/NAME@COMMIT``), or None."""
    return owner.partition("@")[0] if owner else None
