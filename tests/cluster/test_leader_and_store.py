"""A frozen leader comes back fenced; a leader killed mid-rollout is succeeded; the store restarts or vanishes
under a stream of applies."""
import signal
import threading
import time

from tests.cluster import figures
from tests.cluster.figures import Load
from tests.cluster.fleet import write_manifest
from tests.e2e.cluster import wait_for


def test_a_leader_frozen_past_its_lease_comes_back_harmless(fleet):
    app = "frozen"
    fleet.deploy(app, instances=2)
    old = wait_for("a leader", fleet.leader, timeout=20)
    new = "r2" if old == "r1" else "r1"
    old_epoch = fleet.get("/healthz", old)["epoch"]
    fleet.daemons[old].signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(f"{new} to lead", lambda: (fleet.get("/healthz", new) or {}).get("leader"),
                 timeout=3 * fleet.timings["lease_ttl"] + 10, interval=0.1)
        detect = time.monotonic() - stopped
        fleet.deploy(app, instances=3)          # the new leader changes things
        recover = time.monotonic() - stopped
        before = {i["id"]: i["pid"] for i in fleet.serving(app)}
        new_epoch = fleet.get("/healthz", new)["epoch"]
    finally:
        fleet.daemons[old].signal(signal.SIGCONT)
        resumed = time.time()
    assert new_epoch > old_epoch
    assert len(before) == 3, f"{len(before)} instances serving after the new leader scaled to 3"
    # The old leader resumes believing it leads, with a plan made for two instances. It has had its chance
    # to act on it once it has run, and heard every agent, for three lease periods since.
    fleet.heard_from_after(resumed + 3 * fleet.timings["lease_ttl"], reconciler=old, timeout=60)
    after = {i["id"]: i["pid"] for i in fleet.serving(app)}
    health = fleet.get("/healthz", old)
    figures.record("3 leader SIGSTOPped past its lease", detect=detect, recover=recover,
                   lost=3 - len(after), died=len(fleet.died()), note=f"epoch {old_epoch} -> {new_epoch}")
    assert after == before, "the resumed old leader changed what runs"
    assert not health.get("leader"), "the resumed old leader still claims the lease"
    assert fleet.get("/healthz", new)["leader"] and not fleet.died()


def rollout_rows(fleet, app, old_ids):
    """``(desired rows, new ready, old desired)`` of ``app`` as the API lists them now."""
    rows = [i for i in fleet.instances(app) if i["desired"]]
    new_ready = [i for i in rows if i["id"] not in old_ids and i["ready"]]
    return rows, new_ready, [i for i in rows if i["id"] in old_ids]


def progress_complete(fleet, app, past_revision=None):
    """Whether the API says ``app``'s rollout is complete (every instance available for minReady), at a
    revision other than ``past_revision`` when that is given."""
    found = [a for a in (fleet.get("/v1/apps") or []) if a["name"] == app]
    if not found or (past_revision is not None and str(found[0]["revision"]) == str(past_revision)):
        return False
    return any(c["type"] == "Progressing" and c["reason"] == "Complete" for c in found[0]["conditions"])


def test_a_leader_killed_during_a_rolling_update_is_succeeded_and_the_update_completes(fleet):
    app, count, surge = "rolling", 3, 1
    # minReady slows each step down, so that the kill lands early and the new leader does most of the rollout.
    update = {"update": {"maxSurge": surge, "maxUnavailable": 0, "minReady": "2s"}}
    fleet.deploy(app, instances=count, extra=update)
    wait_for(f"{app} available for minReady", lambda: progress_complete(fleet, app), timeout=30)
    old_ids = {i["id"] for i in fleet.serving(app)}
    old_revision = next(a["revision"] for a in fleet.get("/v1/apps") if a["name"] == app)
    leader = wait_for("a leader", fleet.leader, timeout=20)
    follower = "r2" if leader == "r1" else "r1"
    changed = write_manifest(fleet.workdir, app, count, dict(update, env={"GREETING": "again"}))
    most = {"rows": 0, "mid_rollout": 0}

    def sample():
        rows, new_ready, old = rollout_rows(fleet, app, old_ids)
        most["rows"] = max(most["rows"], len(rows))
        most["mid_rollout"] += bool(old)
        return rows, new_ready, old

    def begun():
        """The old rows still desired, once a new instance is ready."""
        _, new_ready, old = sample()
        return old if new_ready else None

    def follower_leads():
        sample()
        return (fleet.get("/healthz", follower) or {}).get("leader")

    def done():
        _, new_ready, old = sample()
        return len(new_ready) == count and not old and progress_complete(fleet, app, old_revision)

    with Load(fleet, app, interval=0.05) as load:
        fleet.corral("apply", "-f", changed, timeout=60)
        at_kill = wait_for("the rollout begun: a new instance ready, old ones still desired", begun, timeout=60,
                           interval=0.05)
        fleet.daemons[leader].ended_on_purpose = True
        fleet.daemons[leader].kill()
        killed = time.monotonic()
        wait_for(f"{follower} to lead", follower_leads, timeout=3 * fleet.timings["lease_ttl"] + 10, interval=0.1)
        detect = time.monotonic() - killed
        wait_for(f"{count} new instances serving, no old one desired, the rollout complete", done, timeout=120,
                 interval=0.1)
        recover = time.monotonic() - killed
    serving = fleet.serving(app)
    died = fleet.died()
    figures.record("4 leader SIGKILLed mid-rollout", detect=detect, recover=recover,
                   lost=count - len(serving), failed=len(load.failures), requests_sent=load.sent, died=len(died),
                   note=f"{leader} killed with {len(at_kill)} old of {count} left; "
                        f"at most {most['rows']} desired rows (limit {count + surge})")
    assert len(serving) == count and not {i["id"] for i in serving} & old_ids
    assert most["mid_rollout"] >= 20, (f"only {most['mid_rollout']} samples of the desired rows while old ones were "
                                       f"still desired: the rollout's surge was hardly measured")
    assert load.sent >= 100 and load.answered_by, f"the load loop sent only {load.sent} requests"
    assert {i["revision"] for i in serving} != {None} and len({i["revision"] for i in serving}) == 1
    assert most["rows"] <= count + surge, \
        f"{most['rows']} instances desired at once; maxSurge {surge} allows {count + surge}"
    assert load.failures == [], f"{len(load.failures)} of {load.sent} requests found no instance with maxUnavailable 0"
    assert not died, f"daemons died: {died}"


def test_a_freshly_started_reconciler_that_takes_over_a_rollout_keeps_max_unavailable(fleet):
    app, count = "takeover", 3
    update = {"update": {"maxSurge": 1, "maxUnavailable": 0, "minReady": "10s"}}
    fleet.deploy(app, instances=count, extra=update)
    wait_for(f"{app} available for minReady", lambda: progress_complete(fleet, app), timeout=60)
    old_ids = {i["id"] for i in fleet.serving(app)}
    leader = wait_for("a leader", fleet.leader, timeout=20)
    follower = "r2" if leader == "r1" else "r1"
    fleet.daemons[follower].kill()
    fleet.daemons[follower].start()          # a fresh follower: it has seen nothing ready yet
    wait_for(f"{follower} answering", lambda: fleet.get("/healthz", follower), timeout=30)
    # Its API answers before the agents have reconnected and reported to it (their reconnection backs off to
    # 1 s): until then it lists the instances pending, and a client following it would find none to ask.
    wait_for(f"{follower} hearing the nodes", lambda: len([i for i in fleet.instances(app, follower)
                                                           if i["state"] == "running"]) == count, timeout=30)
    fewest = {"covered": count, "mid_rollout": 0}

    def sample():
        """Old rows still desired plus new instances ready; with maxUnavailable 0 never below the count."""
        _, new_ready, old = rollout_rows(fleet, app, old_ids)
        fewest["covered"] = min(fewest["covered"], len(old) + len(new_ready))
        fewest["mid_rollout"] += bool(old)
        return new_ready, old

    with Load(fleet, app, interval=0.05) as load:
        fleet.corral("apply", "-f", write_manifest(fleet.workdir, app, count, dict(update, env={"GREETING": "b"})),
                     timeout=60)
        fleet.daemons[leader].ended_on_purpose = True
        fleet.daemons[leader].kill()
        killed = time.monotonic()
        wait_for(f"{follower} to lead", lambda: (sample(), (fleet.get("/healthz", follower) or {}).get("leader"))[1],
                 timeout=3 * fleet.timings["lease_ttl"] + 10, interval=0.1)
        detect = time.monotonic() - killed
        wait_for("the rollout done", lambda: (lambda r: len(r[0]) == count and not r[1])(sample()), timeout=150,
                 interval=0.1)
        recover = time.monotonic() - killed
    figures.record("4b ... taken over by a fresh follower", detect=detect, recover=recover,
                   lost=count - len(fleet.serving(app)), failed=len(load.failures), requests_sent=load.sent,
                   died=len(fleet.died()), note=f"minReady 10s; lowest old desired + new ready: "
                                                f"{fewest['covered']} of {count}")
    assert fewest["mid_rollout"] >= 20, (f"only {fewest['mid_rollout']} samples while old rows were still desired: "
                                         f"the takeover's rollout was hardly measured")
    assert fewest["covered"] >= count, (f"old rows still desired plus new ready ones fell to {fewest['covered']} "
                                        f"of {count}; {len(load.failures)} of {load.sent} requests failed")
    assert not fleet.died()


class Applier:
    """Applies app ``stream-K`` (0 instances) for K = 0..count-1, one after another, and remembers each answer
    (``accepted`` / ``refused``: name, stderr, and when the answer came) and when each apply began (``began``)."""

    def __init__(self, fleet, count):
        self.fleet, self.count = fleet, count
        self.accepted, self.refused = [], []
        self.slowest = 0.0
        self.began = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + 240
        for k in range(self.count):
            if time.monotonic() > deadline:
                break
            name = f"stream-{k}"
            path = write_manifest(self.fleet.workdir, name, 0)
            began = time.monotonic()
            self.began[name] = began
            r = self.fleet.corral("apply", "-f", path, check=False, timeout=90)
            self.slowest = max(self.slowest, time.monotonic() - began)
            (self.accepted if r.returncode == 0 else self.refused).append((name, r.stderr.strip(), time.monotonic()))
            time.sleep(0.2)


def _store_outage(fleet, label, make_outage, end_outage, outage_s, must_refuse=True):
    applier = Applier(fleet, count=40)
    applier._thread.start()
    wait_for("three accepted applies", lambda: len(applier.accepted) >= 3, timeout=60)
    began = time.monotonic()
    make_outage()
    time.sleep(outage_s)
    ending = time.monotonic()
    end_outage()
    ended = time.monotonic()
    applier._thread.join(300)
    recovered = wait_for("the API answering from the store again",
                         lambda: fleet.get("/v1/apps", store_down_ok=True) is not None and fleet.leader(), timeout=60)
    assert recovered
    # detect: from the outage to the first apply refused; recover: from its end to the first apply accepted after.
    detect = min((at - began for _, _, at in applier.refused if at > began), default=None)
    recover = min((at - ended for _, _, at in applier.accepted if at > ended), default=None)
    stored = {a["name"] for a in fleet.get("/v1/apps")}
    lost = [name for name, _, _ in applier.accepted if name not in stored]
    figures.record(label, detect=detect, recover=recover, lost=len(lost), failed=len(applier.refused),
                   requests_sent=len(applier.accepted) + len(applier.refused), died=len(fleet.died()),
                   note=f"outage {ended - began:.0f}s; failed = applies refused; slowest apply "
                        f"{applier.slowest:.1f}s")
    during = [name for name, t in applier.began.items() if began <= t < ending]
    assert during, (f"no apply began during the {ending - began:.0f}s outage (of {len(applier.began)} sent): "
                    f"the outage was not exercised")
    accepted_in_outage = [name for name, _, at in applier.accepted if began <= applier.began[name] and at < ending]
    assert not accepted_in_outage, f"applies begun and accepted while the store was down: {accepted_in_outage}"
    assert recover is not None, (f"no apply was accepted after the outage ended (of {len(applier.began)} sent): "
                                 f"recovery was not measured")
    assert lost == [], f"applies the client was told succeeded are not in the store: {lost}"
    assert not fleet.died(), f"daemons died: {fleet.died()}"
    if not must_refuse:
        return applier
    assert applier.refused, "no apply was refused while the store was down: the outage was not exercised"
    for _, err, _ in applier.refused:
        assert err.startswith("error: ") and err.count("\n") == 0, f"not one clear sentence: {err!r}"
        assert "store" in err or "answered" in err, f"the error does not say the store is down: {err!r}"
    assert not fleet.died(), f"daemons died: {fleet.died()}"


def test_postgresql_restart_under_applies_loses_nothing(fleet):
    _store_outage(fleet, "5a PostgreSQL restart under applies",
                  lambda: fleet.pg.stop("fast"), fleet.pg.start, outage_s=5)


def test_postgresql_unreachable_for_20s_under_applies_loses_nothing(fleet):
    applier = _store_outage(fleet, "5b PostgreSQL unreachable 20 s",
                            lambda: fleet.dc.cut("store"), lambda: fleet.dc.heal("store"), outage_s=20,
                            must_refuse=False)
    fleet.unreachable_slowest = applier.slowest


def test_an_apply_while_postgresql_is_unreachable_is_answered_within_15s(fleet):
    fleet.deploy("probe", instances=0, wait=False)
    fleet.dc.cut("store")
    try:
        began = time.monotonic()
        r = fleet.corral("apply", "-f", write_manifest(fleet.workdir, "during-cut", 0), check=False, timeout=90)
        took = time.monotonic() - began
    finally:
        fleet.dc.heal("store")
    assert took <= 15, f"the apply took {took:.0f}s (exit {r.returncode}: {r.stderr.strip()[:200]})"
