"""The control loop: the thin shell around the planner (leader only).

:meth:`Controller.sync` works a batch of keys from the work queue (app names,
or ``ALL`` for a full resync): it reads the apps, the desired instance table
and the builds from the store and the observed state from memory, makes sure
each app's image is queued for the builder, records a new revision in the
history, calls :func:`plan` for those apps (the other apps' rows only take up
room), writes the plan in one fenced transaction, records why in events,
updates each app's status, and sends every node whose assignment changed, or
whose last report is out of step with it, its whole assignment. A sync is
level triggered: it re-reads everything for its keys, so a missed event or a
lost message costs at most one resync interval.

After a restart the reconciler knows nothing of what runs: it defers every
sync until each node that holds desired instances has reported, or the
heartbeat timeout has passed since its start (then a silent node is
unreachable, which changes nothing), so a restart of every reconciler at once
stops no running instance.
"""
import dataclasses
import logging
import secrets
import time

from corral import versions
from corral.store import Fenced, RevisionRecord, StoreError
from reconciler import agent_specs, layer_urls
from reconciler.outcome import Prepared, outcome
from reconciler.planner import plan
from reconciler.runplan import plan_runs
from reconciler.status import next_revision, rollout_failed
from reconciler.model import LOST
from services.plan import service_conditions

log = logging.getLogger(__name__)

# The first release whose agents read an assignment's "replaced": an older agent's schema refuses a
# field it does not know, so it is not sent one (it drains its replaced copies, as it always did).
REPLACED_SINCE = "0.2"


def agent_version(report):
    """The release a node's agent says it runs (None before its first report)."""
    return report.node.get("version") if report is not None else None

ALL = "*"  # the work-queue key of a full resync: every app, every node's assignment


def new_instance_id(existing):
    """A factory of ids like ``hello-web-7f3a`` that never repeats one in ``existing``."""
    def make(app, process):
        for nbytes in (2, 2, 2, 3, 4, 8):
            candidate = f"{app}-{process}-{secrets.token_hex(nbytes)}"
            if candidate not in existing:
                existing.add(candidate)
                return candidate
        raise RuntimeError("could not find a free instance id")
    return make


@dataclasses.dataclass
class SyncResult:
    """What a sync did: the plan, the keys that failed (to retry with backoff),
    and whether it was deferred while waiting for the first reports."""

    plan: object = None
    failed: set = dataclasses.field(default_factory=set)
    deferred: bool = False


def out_of_step(assigned, report, epoch):
    """Whether a node's last report (a NodeReport, or None) disagrees with its assignment
    (``assign`` instance dicts) at ``epoch``: never reported, has not seen this epoch
    (a new leader, a restarted agent) or holds another set of instance ids (a lost
    assign; an instance still stopping). A purely computational function."""
    if report is None or report.epoch_seen < epoch:
        return True
    return {i["id"] for i in report.instances} != {i["id"] for i in assigned}


def resend_due(last, epoch, ids, now, after):
    """Whether to send a node the assignment ``ids`` at ``epoch`` again, given ``last``
    ``(epoch, ids, when)`` sent to it (or None): never sent, another one, or sent more
    than ``after`` seconds ago (time enough to act on it and report). Pure."""
    return last is None or last[:2] != (epoch, ids) or now - last[2] > after


class Controller:
    """Syncs apps for the leader and pushes assignments over the bus."""

    def __init__(self, store, observed, bus, timings, name, clock=time.time, metrics=None, services=None):
        self.store = store
        self.layer_urls = layer_urls.LayerUrls(store, timings.layer_url_ttl)
        self._applies_measured = {}   # app -> the generation whose apply latency was observed
        self.metrics = metrics   # reconciler.metrics.ReconcilerMetrics, or None
        self.services = services  # a reconciler.appservices.ServiceKeeper, or None (no service servers)
        self.observed = observed
        self.bus = bus
        self.timings = timings
        self.name = name
        self.actor = f"reconciler/{name}"
        self.clock = clock
        self._node_written = {}  # node -> (facts, when) last written to the store
        self._unplaced_said = {}  # (app, process) -> reason last recorded as an event
        self._apps_on_node = {}  # node -> app names with desired rows there (after the last sync)
        self._sent = {}  # node -> (epoch, ids, when, (layer URLs' expiry, key generation)) of the last assignment sent
        self._replaced = {}  # node -> ids dropped while it was lost, until its reports no longer hold them

    def apps_on_node(self, node):
        """App names with desired instances on ``node`` as of the last sync (event routing)."""
        return set(self._apps_on_node.get(node, ()))

    def waiting_for_reports(self, desired, now):
        """Node names that hold desired instances and have not reported since this
        reconciler started, while the heartbeat timeout since its start runs."""
        if now - self.observed.started_at > self.timings.heartbeat_timeout:
            return set()
        return {r.node for r in desired} - set(self.observed.reports())

    # -- one pass ---------------------------------------------------------
    def run_once(self, epoch):
        """A full resync as leader at ``epoch``; returns the plan; raises Fenced if deposed."""
        return self.sync(epoch, [ALL]).plan

    def sync(self, epoch, keys):
        """Converge the apps named in ``keys`` (``ALL``: every app) as leader at ``epoch``: read,
        :func:`plan`, :func:`outcome`, write.

        Raises Fenced when deposed and StoreError when the shared write fails
        (the caller retries every key); an app whose own steps fail is
        returned in ``failed`` and the others go on.
        """
        now = self.clock()
        self._record_nodes(now)
        desired = self.store.list_desired()
        if self.waiting_for_reports(desired, now):
            return SyncResult(deferred=True)
        full = ALL in keys
        records = self.store.list_apps() if full else self.store.list_apps(names=keys)
        wanted = {r.name for r in records} | {r.app for r in desired} if full else set(keys)
        builds = {b.key: b for b in self.store.list_build_states()}
        prepared, failed = self._prepare_all([r for r in records if r.name in wanted], builds, now)
        planned = {p.record.name for p in prepared} | (wanted - {r.name for r in records})
        named = {r.name for r in records}   # a full sync also ends and prunes the runs of apps gone
        runs = [r for r in self.store.list_runs() if r.app in planned or (full and r.app not in named)]
        run_rows = [r for r in desired if r.id in {run.id for run in runs}]
        instances = [r for r in desired if r not in run_rows]  # a run's row is the run plan's, not the planner's
        rows = [r for r in instances if r.app in planned]
        nodes = self.observed.node_views(self.store.list_nodes(), desired, now, self.timings)
        observed = self.observed.instances()
        new_id = new_instance_id({r.id for r in desired} | {r.id for r in runs})
        began = time.monotonic()
        result = plan([p.app for p in prepared], rows, observed, nodes, new_id,
                      now=now, others=[r for r in instances if r.app not in planned] + run_rows)
        if self.metrics is not None:
            self.metrics.planned(time.monotonic() - began, result, rows)
        out = outcome(prepared, instances, rows, result, observed, nodes, now, self.actor)
        self._write_table(epoch, result, out, {r.id: r.node for r in rows})
        ran = self._write_runs(epoch, prepared, runs, list(out.after) + run_rows, nodes, now, new_id)
        self._record_unplaced(result.unplaced + ran.unplaced, planned, full)
        ended = set(ran.stop)
        after = list(out.after) + [r for r in run_rows if r.id not in ended] + list(ran.boot)
        touched = out.touched | {r.node for r in ran.boot} | {r.node for r in run_rows if r.id in ended}
        # Assignments first: they start instances; statuses only describe them.
        self._apps_on_node = {}
        for r in after:
            self._apps_on_node.setdefault(r.node, set()).add(r.app)
        artifacts = {b.image: {"layers": b.layers}
                     for b in builds.values() if b.state == "succeeded" and b.image and b.layers}
        self.push_assignments(epoch, after, artifacts, nodes, only=touched)
        self.store.record_revisions(epoch, [p.new_revision for p in prepared if p.new_revision is not None])
        if out.statuses:
            self.store.set_app_statuses(out.statuses, epoch)
            self.store.add_events(list(out.status_events))
            if self.metrics is not None:
                self.metrics.rollouts_completed(prepared, out.status_events, now, self._applies_measured)
        for name, why in out.failed.items():
            log.warning("status of app %s failed: %s", name, why)
        return SyncResult(plan=result, failed=failed | set(out.failed))

    def _prepare_all(self, records, builds, now):
        """``([Prepared], failed app names)``: one app's trouble must not hold up the others."""
        prepared, failed = [], set()
        service_rows = self._service_rows(records)
        for rec in records:
            try:
                prepared.append(self._prepare(rec, builds, now, service_rows.get(rec.name, ())))
            except Fenced:
                raise
            except Exception as e:
                log.warning("sync of app %s failed: %s", rec.name, e)
                failed.add(rec.name)
        return prepared, failed

    def _write_table(self, epoch, result, out, node_of):
        """Write the plan's table changes, its purges and their events (fenced on ``epoch``), and
        remember the rows dropped with a lost node (``node_of``: row id -> node) until it says
        they are gone."""
        if result.boot or result.stop:
            self.store.write_desired(epoch, list(result.boot), [s.id for s in result.stop])
        for name in result.purge:
            self.store.purge_app(name, epoch)
        if out.table_events:
            self.store.add_events(list(out.table_events))
        for s in result.stop:
            if s.node_lost:
                self._replaced.setdefault(node_of[s.id], set()).add(s.id)

    def _write_runs(self, epoch, prepared, runs, desired, nodes, now, new_id):
        """Plan the runs of the prepared apps (:func:`reconciler.runplan.plan_runs`) and write
        the plan in one fenced transaction, before any node hears of it; returns the plan."""
        reports = {name: rep.instances for name, rep in self.observed.reports().items()}
        ran = plan_runs([(p.record, p.app) for p in prepared], runs, desired, nodes, reports, now, new_id)
        if ran.write or ran.stop or ran.prune:
            self.store.write_runs(epoch, runs=list(ran.write), boot=list(ran.boot), stop=list(ran.stop),
                                  prune=list(ran.prune), events=[e + (self.actor,) for e in ran.events])
        return ran

    def _service_rows(self, records):
        """The service rows of ``records`` that ask for services, by app (one query, and only then)."""
        if not any(r.spec.get("services") for r in records):
            return {}
        rows = {}
        for row in self.store.list_services():
            rows.setdefault(row.app, []).append(row)
        return rows

    def _service_env(self, rec, rows):
        """``rec``'s env from its services ({} without any), or None while one has no credential yet."""
        if not rec.spec.get("services"):
            return {}
        return self.services.env_for(rec, rows) if self.services is not None else None

    def _service_conditions(self, rec, rows):
        """The conditions of ``rec``'s services (ServicesReady, BackupVerified), if it has any."""
        services = rec.spec.get("services")
        if not services:
            return ()
        last = {b.service: (b.id, b.verified, b.reason) for b in self.store.list_service_backups(rec.name)}
        return tuple(service_conditions(services, {r.name: (r.state, r.message) for r in rows}, last))

    def _prepare(self, rec, builds, now, service_rows=()):
        """The :class:`Prepared` view of one app; queues its build. The instances' spec carries the
        app's service env (its own ``env`` wins a name both have); the recorded revision keeps the
        spec as applied. An app whose services are not provisioned yet is held as if unbuilt:
        nothing boots without them."""
        build = None
        if not rec.deleting:
            key, inputs = agent_specs.build_inputs(rec)
            build = builds.get(key)
            if build is None:
                build = self.store.enqueue_build(key, rec.name, inputs)
                self.store.add_event("app", rec.name, "BuildQueued",
                                     f"image build queued for source {rec.source_digest[:19]}", self.actor)
        image = build.image if build is not None and build.state == "succeeded" else None
        applied = rec
        service_env = self._service_env(rec, service_rows)
        if service_env is None:
            image = None
        elif service_env:
            rec = dataclasses.replace(rec, spec={**rec.spec, "env": {**service_env, **(rec.spec.get("env") or {})}})
        rev_hash = rec.status.get("revisionHash")
        revision = rec.status.get("revision", "0")
        if image is not None:
            rev_hash = agent_specs.revision_hash(rec.spec, image)
            revision = next_revision(rec.status, rev_hash)
        new_rev = None
        if image is not None and rev_hash != rec.status.get("revisionHash"):
            new_rev = RevisionRecord(app=rec.name, revision=int(revision), hash=rev_hash, image=image,
                                     spec=applied.spec, source_digest=rec.source_digest, generation=rec.generation,
                                     created_at=now)
        app = agent_specs.desired_app(rec, image, revision, rollout_failed=rollout_failed(rec.status, revision))
        return Prepared(applied, app, build, rev_hash, new_rev, self._service_conditions(applied, service_rows))

    # -- helpers ----------------------------------------------------------
    def push_assignments(self, epoch, rows, artifacts, nodes, only=None):
        """Send a node that is not lost its whole assignment (idempotent on the agent) when it
        is named in ``only`` (None: every node), its last report is out of step with it
        (:func:`out_of_step`) and the same assignment was not sent within the heartbeat
        timeout (:func:`resend_due`), or the layer URLs last sent to it have half their time
        or less to run or were signed with a key since rotated: so a lost message is made good by a later pass, an agent retrying a
        fetch holds a URL that is good, while neither an idle cluster nor agents still starting
        what they were sent are sent their assignments again on every pass (1,000 nodes: 1,000
        messages a pass). Each node's layer URLs are signed for it (:mod:`reconciler.layer_urls`)."""
        by_node = {n.name: [] for n in nodes if n.state != LOST}
        for r in rows:
            if r.node in by_node and r.image in artifacts:
                by_node[r.node].append(r)
        reports, now = self.observed.reports(), self.clock()
        signer = None
        for node, held in by_node.items():
            ids, last = tuple(r.id for r in held), self._sent.get(node)
            if not (only is None or node in only
                    or (out_of_step([{"id": i} for i in ids], reports.get(node), epoch)
                        and resend_due(last, epoch, ids, now, self.timings.heartbeat_timeout))
                    or (held and self.layer_urls.renewal_due(last[3] if last else None, now))):
                continue
            signer = signer or self.layer_urls.signer(now)
            newer = not versions.older_than(agent_version(reports.get(node)), layer_urls.MIRRORS_SINCE)
            body = {"node": node, "instances": [{
                "id": r.id, "app": r.app, "process": r.process, "revision": r.revision, "image": r.image,
                "artifact": signer.artifact(node, r.image, artifacts[r.image], newer), "spec": r.spec}
                for r in held]}
            replaced = self._still_replaced(node, reports.get(node))
            if replaced and not versions.older_than(agent_version(reports.get(node)), REPLACED_SINCE):
                body["replaced"] = replaced
            self.bus.send(node.encode(), "assign", body, epoch)
            self._sent[node] = (epoch, ids, now, (signer.exp, signer.generation) if held else None)

    def _still_replaced(self, node, report):
        """The ids dropped while ``node`` was lost that its last report still holds (sorted); the
        others are forgotten. Its agent stops those at once: a drain protects no client of theirs."""
        ids = self._replaced.get(node)
        if not ids:
            return []
        if report is not None:
            ids &= {i["id"] for i in report.instances}
        if not ids:
            del self._replaced[node]
        return sorted(ids)

    def _record_nodes(self, now):
        """Write node facts to the store when they change, and every 10 s for last_seen (one transaction)."""
        batch = []
        for name, rep in self.observed.reports().items():
            facts = (rep.node.get("address", ""), rep.node.get("labels", {}), rep.node.get("capacity", {}))
            prev = self._node_written.get(name)
            if prev is None or prev[0] != facts or now - prev[1] > 10:
                batch.append((name, *facts, rep.received_at))
                self._node_written[name] = (facts, now)
        self.store.upsert_nodes(batch)

    def _record_unplaced(self, unplaced, planned, full):
        """One event per new reason an instance cannot be placed (not one per pass)."""
        current = {k: v for k, v in self._unplaced_said.items() if not full and k[0] not in planned}
        current.update({(u.app, u.process): u.reason for u in unplaced})
        for (app, process), reason in current.items():
            if self._unplaced_said.get((app, process)) != reason:
                self.store.add_event("app", app, "Unschedulable", f"process {process}: {reason}", self.actor)
        self._unplaced_said = current


__all__ = ["ALL", "Controller", "Fenced", "SyncResult", "StoreError", "new_instance_id"]
