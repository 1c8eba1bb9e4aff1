"""What one commit of a source means for the apps it owns: creates, updates, prunes, refusals, drift.

Pure: no clock, no store, no git. The shell passes in what the commit declares
(:class:`Wanted`), what the store holds (:class:`Live`) and the source's last
synced commit, and carries out the :class:`SyncPlan` it gets back.

Ownership is by construction: only apps whose owner is this source are ever
compared for drift or named for prune; an app applied by hand (no owner) is
adopted only when the repository declares it, and an app of another source
refuses the whole commit. Comparison is on specs after defaults (both sides
went through the same validator), so fields the server fills in never look
like drift.
"""
import dataclasses
from typing import Optional

from corral.secrets import is_secret, redact
from corral.spec.model import field_text, show
from corral.owners import owner_source

SYNCED = "Synced"
OUT_OF_SYNC = "OutOfSync"


@dataclasses.dataclass(frozen=True)
class Source:
    """The parts of a GitSource that decide a sync."""

    name: str
    prune: bool = True
    self_heal: bool = True
    allow_empty: bool = False
    path: str = "."

    @property
    def owner(self):
        """How an app's owner names this source (before ``@COMMIT``)."""
        return f"gitsource/{self.name}"


@dataclasses.dataclass(frozen=True)
class Wanted:
    """One app as the commit declares it (spec with defaults; its source packed)."""

    name: str
    labels: dict
    spec: dict
    source_digest: str
    file: str = ""


@dataclasses.dataclass(frozen=True)
class Live:
    """One app as the store holds it."""

    name: str
    labels: dict
    spec: dict
    source_digest: str
    owner: Optional[str] = None
    deleting: bool = False


@dataclasses.dataclass(frozen=True)
class AppSync:
    """An app's sync state after this sync: ``Synced`` or ``OutOfSync`` with what differs."""

    name: str
    state: str
    diff: tuple = ()


@dataclasses.dataclass(frozen=True)
class Drift:
    """An owned app someone changed after the last sync: what differs, and whether it is put back."""

    name: str
    diff: tuple
    healed: bool


@dataclasses.dataclass(frozen=True)
class SyncPlan:
    """What to write for one commit. ``refused`` (one sentence) means: write nothing but the error."""

    commit: str
    apply: tuple = ()
    prune: tuple = ()
    apps: tuple = ()
    drift: tuple = ()
    refused: Optional[str] = None


def differences(live, wanted, prefix=()):
    """The fields where ``live`` differs from ``wanted``, as sentences ``field: live X, git Y``, sorted.

    Purely computational: walks two JSON values and returns one sentence per
    differing leaf (a missing side shows as ``absent``).
    """
    if isinstance(live, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(live) | set(wanted), key=str):
            shown = _shown_secret if is_secret(prefix + (key,)) else show
            if key not in live:
                out.append(f"{field_text(prefix + (key,))}: live absent, git {shown(wanted[key])}")
            elif key not in wanted:
                out.append(f"{field_text(prefix + (key,))}: live {shown(live[key])}, git absent")
            else:
                out.extend(differences(live[key], wanted[key], prefix + (key,)))
        return out
    if live == wanted and type(live) is type(wanted):
        return []
    shown = _shown_secret if is_secret(prefix) else show
    return [f"{field_text(prefix) or 'value'}: live {shown(live)}, git {shown(wanted)}"]


def _shown_secret(value):
    return "absent" if value is None else redact(value)


def app_differences(live, wanted):
    """What differs between a stored app and the commit's: labels, spec, source, and a pending delete."""
    out = differences({"metadata": {"labels": live.labels}, "spec": live.spec, "source": live.source_digest},
                      {"metadata": {"labels": wanted.labels}, "spec": wanted.spec, "source": wanted.source_digest})
    if live.deleting:
        out.append("deleting: the app was deleted, git still declares it")
    return tuple(out)


def _doc(wanted, owner):
    return {"name": wanted.name, "labels": wanted.labels, "spec": wanted.spec,
            "source_digest": wanted.source_digest, "owner": owner}


def plan_sync(source, commit, wanted, live, last_synced):
    """The :class:`SyncPlan` that makes the apps ``source`` owns equal to ``wanted`` at ``commit``.

    - not in the store, or applied by hand: applied with owner ``gitsource/NAME@COMMIT``;
    - owned by another source: the whole commit is refused;
    - owned, and different: applied when ``commit`` is new (a rollout); when
      ``commit`` is the one last synced, someone changed it since: drift,
      put back only with ``selfHeal``;
    - owned, and gone from the commit: pruned (or reported with prune off);
    - a commit that declares no app while the source owns some is refused
      unless ``allowEmpty``.

    Purely computational: no side effects, inputs unchanged.
    """
    live_by_name = {a.name: a for a in live}
    owned = [a for a in live if owner_source(a.owner) == source.owner and not a.deleting]
    owner = f"{source.owner}@{commit}"
    if not wanted and owned and not source.allow_empty:
        return SyncPlan(commit, refused=(
            f"commit {commit[:12]} declares no app under {source.path!r}: refusing to delete all "
            f"{len(owned)} apps this source owns (set allowEmpty: true to allow it)"))
    apply, states, drift = [], [], []
    for w in sorted(wanted, key=lambda w: w.name):
        current = live_by_name.get(w.name)
        held_by = owner_source(current.owner) if current else None
        if held_by not in (None, source.owner):
            where = f"{w.file}: " if w.file else ""
            return SyncPlan(commit, refused=f"{where}app {w.name!r} is owned by {held_by}, not {source.owner}")
        if current is None or held_by is None:
            apply.append(_doc(w, owner))
            states.append(AppSync(w.name, SYNCED))
            continue
        diff = app_differences(current, w)
        if not diff:
            states.append(AppSync(w.name, SYNCED))
        elif commit != last_synced:
            apply.append(_doc(w, owner))
            states.append(AppSync(w.name, SYNCED))
        else:
            drift.append(Drift(w.name, diff, healed=source.self_heal))
            if source.self_heal:
                apply.append(_doc(w, owner))
                states.append(AppSync(w.name, SYNCED))
            else:
                states.append(AppSync(w.name, OUT_OF_SYNC, diff))
    names = {w.name for w in wanted}
    gone = sorted(a.name for a in owned if a.name not in names)
    if not source.prune:
        states.extend(AppSync(n, OUT_OF_SYNC, ("gone from the repository; prune is off",)) for n in gone)
        gone = []
    return SyncPlan(commit, apply=tuple(apply), prune=tuple(gone),
                    apps=tuple(sorted(states, key=lambda s: s.name)), drift=tuple(drift))


def is_due(spec_interval, status, generation, requested_at, now):
    """Whether a source should sync now: never synced at this generation, a sync was asked for
    since the last attempt, or ``spec_interval`` seconds passed since it. Pure."""
    last = status.get("lastAttempt")
    if last is None or status.get("generation") != generation:
        return True
    if requested_at is not None and requested_at != status.get("handledRequest"):
        return True
    return now - last >= spec_interval
