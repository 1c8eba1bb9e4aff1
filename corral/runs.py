"""What a run is: the record of one run of a scheduled process, a trigger or a one-off.

It lives here, outside :mod:`corral.store`, so that the pure cores that plan runs
(:mod:`reconciler.cron`, :mod:`reconciler.runplan`) make and read the same records
the store writes, without importing the store.
"""
import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run of a scheduled process, a ``corral trigger`` or a ``corral run``.

    ``slot`` (whole seconds since the epoch) is set for scheduled runs only, and
    ``(app, process, slot)`` is unique: a slot has at most one run, ever.
    ``kind``: schedule | trigger | oneoff | attached (a one-off whose command runs
    through ``corral run``'s terminal; its instance only holds the environment).
    ``state``: requested (asked for through the API, not yet placed) | pending
    (placed: its instance ``id`` is in the desired table on ``node``) | running |
    succeeded | failed | skipped.
    ``command`` is a one-off's argv (None: the process's own).
    """

    id: str
    app: str
    process: str
    slot: Optional[int]
    kind: str
    state: str
    node: Optional[str] = None
    command: Optional[list] = None
    exit_code: Optional[int] = None
    message: Optional[str] = None
    created_at: float = 0.0
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    actor: str = ""
