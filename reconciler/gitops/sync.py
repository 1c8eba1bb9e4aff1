"""The leader's GitOps loop: the thin shell around :func:`plan.plan_sync`.

For each source that is due (its interval passed, `corral sync` or a webhook
asked, or its spec changed): fetch the branch, load and validate the commit's
manifests (cached per commit, so a no-change sync reads no files), upload the
sources, read the apps, plan, and write the plan and the status in one fenced
transaction. A commit that fails anywhere writes only the error: the cluster
keeps the last good commit.
"""
import logging
import time

from corral.spec import SpecError, parse_duration
from corral.store import Conflict
from reconciler.gitops import plan as core
from reconciler.gitops.manifests import load_commit
from reconciler.gitops.repo import GitError
from reconciler.routes import route_refusal

log = logging.getLogger(__name__)


def source_of(rec):
    """The :class:`plan.Source` of a stored GitSource."""
    spec = rec.spec
    return core.Source(rec.name, prune=spec["prune"], self_heal=spec["selfHeal"],
                       allow_empty=spec["allowEmpty"], path=spec["path"])


def live_apps(records):
    """Stored apps as the plan reads them."""
    return [core.Live(r.name, r.labels, r.spec, r.source_digest, r.owner, r.deleting) for r in records]


class GitSync:
    """Syncs the sources that are due, as leader at an epoch."""

    def __init__(self, store, repos, name, kick=lambda: None, clock=time.time, scratch_dir=None,
                 cluster_domain="localhost"):
        self.store = store
        self.cluster_domain = cluster_domain   # for the default routes a commit's apps claim
        self.repos = repos
        self.actor = f"reconciler/{name}"
        self.kick = kick
        self.clock = clock
        self.scratch_dir = scratch_dir
        self._loaded = {}  # source name -> (url, commit, path, wanted)

    def due(self):
        """The names of the sources due to sync now (:func:`plan.is_due`): the leader's resync
        enqueues them in its work queue, which hands each to :meth:`sync_named`."""
        now = self.clock()
        return [rec.name for rec in self.store.list_gitsources()
                if core.is_due(parse_duration(rec.spec["interval"]), rec.status, rec.generation,
                               rec.sync_requested_at, now)]

    def sync_named(self, name, epoch):
        """Sync the source ``name`` if it still exists; returns the status written, or None.
        Raises Fenced if deposed, StoreError if the store failed (the work queue retries)."""
        rec = self.store.get_gitsource(name)
        return None if rec is None else self.sync(rec, epoch)

    def sync(self, rec, epoch):
        """One sync of the stored source ``rec``; returns the status written."""
        spec, now = rec.spec, self.clock()
        status = {**rec.status, "generation": rec.generation, "lastAttempt": now,
                  "handledRequest": rec.sync_requested_at}
        try:
            commit = self.repos.fetch(spec["url"], spec["branch"])
            status["fetchedCommit"] = commit
            wanted = self._wanted(rec, commit)
        except (GitError, SpecError) as e:
            return self._failed(rec, status, str(e), epoch)
        stored = self.store.list_apps()
        plan = core.plan_sync(source_of(rec), commit, wanted, live_apps(stored), rec.status.get("syncedCommit"))
        if plan.refused:
            return self._failed(rec, status, plan.refused, epoch)
        synced = {**status, "syncedCommit": commit, "lastSynced": now, "lastError": None,
                  "apps": [{"name": a.name, "state": a.state, "diff": list(a.diff)} for a in plan.apps]}
        try:
            results, pruned = self.store.sync_gitsource(
                rec.name, epoch, list(plan.apply), list(plan.prune), synced, f"gitsource/{rec.name}",
                refuse=route_refusal(plan.apply, self.cluster_domain, gone=set(plan.prune),
                                     prefix=f"commit {commit[:12]}: "))
        except Conflict as e:  # an app taken by another source since we read, or a host another app routes
            return self._failed(rec, status, str(e), epoch)   # the commit synced before stays the synced one
        self._record(rec, commit, plan, results, pruned)
        return synced

    def _wanted(self, rec, commit):
        """The commit's apps, loaded once per (url, commit, path) and kept while the source stays there."""
        key = (rec.spec["url"], commit, rec.spec["path"])
        cached = self._loaded.get(rec.name)
        if cached and cached[0] == key:
            return cached[1]
        wanted, archives = load_commit(self.repos, rec.spec["url"], commit, rec.spec["path"], self.scratch_dir)
        for digest, data in archives.items():
            if not self.store.has_source(digest):
                self.store.put_source(digest, data)
        self._loaded[rec.name] = (key, wanted)
        return wanted

    def _failed(self, rec, status, error, epoch):
        """Record a failed sync: only the status (and an event when the error is new) is written."""
        if error != rec.status.get("lastError"):
            self.store.add_event("gitsource", rec.name, "SyncFailed", error, self.actor)
            log.warning("gitsource %s: %s", rec.name, error)
        status["lastError"] = error
        status["lastErrorAt"] = status["lastAttempt"]
        self.store.set_gitsource_status(rec.name, status, epoch)
        return status

    def _record(self, rec, commit, plan, results, pruned):
        """Events for what a sync changed and for drift (who changed the app, what differs)."""
        for d in plan.drift:
            who = self._last_writer(d.name, f"gitsource/{rec.name}")
            what = "; ".join(d.diff)
            if d.healed:
                self.store.add_event("app", d.name, "SelfHealed",
                                     f"changed by {who} outside gitsource/{rec.name} ({what}): put back to "
                                     f"commit {commit[:12]}", self.actor)
            elif self._newly_out_of_sync(rec, d):
                self.store.add_event("app", d.name, "OutOfSync",
                                     f"changed by {who} outside gitsource/{rec.name}: {what}", self.actor)
        changed = [r for r in results if r.action != "unchanged"]
        if changed or pruned:
            counts = {}
            for r in changed:
                counts[r.action] = counts.get(r.action, 0) + 1
            if pruned:
                counts["pruned"] = len(pruned)
            self.store.add_event("gitsource", rec.name, "Synced", f"commit {commit[:12]}: " + ", ".join(
                f"{n} {action}" for action, n in sorted(counts.items())), self.actor)
            self.kick()

    def _newly_out_of_sync(self, rec, drift):
        before = {a["name"]: a for a in rec.status.get("apps", [])}.get(drift.name)
        return not before or before["state"] != core.OUT_OF_SYNC or tuple(before["diff"]) != drift.diff

    def _last_writer(self, app, ours):
        """Who last created or configured ``app``, other than the source itself."""
        for e in reversed(self.store.list_events(kind="app", name=app, limit=50)):
            if e.reason in ("Created", "Configured") and e.actor != ours:
                return e.actor
        return "someone"
