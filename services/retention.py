"""Which backups a ``keep`` policy lets go: a purely computational function with no side-effects.

``keep`` is ``{last, hourly, daily, weekly, monthly}`` (each a count, any may be
absent), read as restic's and borg's ``forget`` read theirs: a backup is kept
when it is one of the newest ``last``, or the newest of one of the newest
``hourly`` hours (``daily`` days, ISO ``weekly`` weeks, ``monthly`` months, in
UTC) that hold a backup. Only verified backups count: an unverified one is let
go once a verified one is newer (until then it is the best there is, and stays).
An empty policy keeps everything.

Worked example: daily backups on the 1st to the 10th, one failed verification on
the 9th, ``keep: {daily: 3}``: the 10th, the 8th and the 7th are kept (the 9th
does not count, and a verified one is newer), the others go.
"""
import datetime

PERIODS = (("hourly", "%Y-%m-%dT%H"), ("daily", "%Y-%m-%d"), ("weekly", "%G-W%V"), ("monthly", "%Y-%m"))


def _bucket(created_at, fmt):
    return datetime.datetime.fromtimestamp(created_at, datetime.timezone.utc).strftime(fmt)


def to_remove(backups, keep):
    """The ids of ``backups`` (``(id, created_at, verified)`` each) that ``keep`` lets go, oldest first."""
    if not keep or not any(keep.values()):
        return []
    newest_first = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    verified = [b for b in newest_first if b[2]]
    kept = {b[0] for b in verified[:keep.get("last", 0)]}
    for period, fmt in PERIODS:
        wanted, seen = keep.get(period, 0), set()
        for b in verified:
            bucket = _bucket(b[1], fmt)
            if bucket in seen:
                continue
            if len(seen) >= wanted:
                break
            seen.add(bucket)
            kept.add(b[0])
    newest_verified = verified[0][1] if verified else None
    kept |= {b[0] for b in newest_first if not b[2] and (newest_verified is None or b[1] > newest_verified)}
    return [b[0] for b in reversed(newest_first) if b[0] not in kept]
