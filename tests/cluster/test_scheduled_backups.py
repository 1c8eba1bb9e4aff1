"""Scheduled backups across leader kills: an app with a PostgreSQL service backed up ``every 5s``; the leader
is SIGKILLed at slot boundaries (just before one, just after one: mid-backup), three times, each time started
again as its unit would be. Every slot from the first backup to the last one awaited has exactly one recorded
backup (the store's ``service_backups``, as ``GET /v1/backups`` lists them), none skipped, each VERIFIED."""
import calendar
import glob
import os
import time

import psycopg2

from tests.cluster import figures
from tests.cluster.fleet import TIMINGS, Fleet
from tests.e2e.cluster import wait_for

EVERY = 5
# Seconds from the slot boundary to the kill: just before it (the old leader never sees the slot), just after it
# (the old leader may be in the middle of its pg_dump or the verification), and before again.
KILL_AT = (-0.1, 0.3, -0.1)


def backup_slots(fleet, app):
    """``{slot (UNIX time): [verified, ...]}`` of the scheduled backups of ``app`` the API lists."""
    out = {}
    for b in fleet.get(f"/v1/backups?app={app}") or []:
        if b["slot"]:
            t = calendar.timegm(time.strptime(b["slot"], "%Y-%m-%dT%H:%M:%SZ"))
            out.setdefault(t, []).append(b["verified"])
    return out


def count(slots, first, last):
    """Slots, backups, duplicates, skips and unverified backups over the slots ``first``..``last``. Pure."""
    wanted = range(first, last + 1, EVERY)
    return {"slots": len(wanted), "backups": sum(len(slots.get(t, ())) for t in wanted),
            "duplicates": sum(max(0, len(slots.get(t, ())) - 1) for t in wanted),
            "skips": sum(1 for t in wanted if t not in slots),
            "unverified": sum(1 for t in wanted for v in slots.get(t, ()) if not v)}


def leftovers(fleet, backup_dir):
    """``(temp files, scratch databases)`` that backups cut short by a kill left behind."""
    temps = glob.glob(os.path.join(backup_dir, "*", "*", "backup.tmp-*"))
    conn = psycopg2.connect(fleet.store)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'corral\\_\\_scratch\\_%'")
            return len(temps), cur.fetchone()[0]
    finally:
        conn.close()


def leading_after(fleet, epoch):
    """The reconciler that leads at an epoch past ``epoch``, or None."""
    for r in ("r1", "r2"):
        health = fleet.get("/healthz", r, timeout=1) or {}
        if health.get("leader") and health.get("epoch", 0) > epoch:
            return r
    return None


def kill_leader_at(fleet, boundary, offset):
    """SIGKILL whoever leads at ``boundary + offset`` (wall clock) and start it again at once (either may win the
    lease then); return ``(killed, seconds until a reconciler led at a later epoch)``."""
    old = wait_for("a leader", fleet.leader, timeout=20, interval=0.05)
    epoch = fleet.get("/healthz", old)["epoch"]
    time.sleep(max(0.0, boundary + offset - time.time()))
    fleet.daemons[old].kill()
    killed = time.monotonic()
    fleet.daemons[old].start()
    wait_for(f"a leader after epoch {epoch}", lambda: leading_after(fleet, epoch),
             timeout=3 * fleet.timings["lease_ttl"] + 10, interval=0.1)
    return old, time.monotonic() - killed


def test_a_scheduled_backup_runs_once_per_slot_across_leader_kills(datacentre, tmp_path):
    store = datacentre.hosts["store"].address
    services = {"postgresql": f"postgresql://postgres@{store}:5432/postgres",
                "backup_dir": os.path.join(str(tmp_path), "backups"), "backup_margin": 0}
    fleet = Fleet(datacentre, tmp_path, timings=dict(TIMINGS, services=services))
    try:
        app = "ledger"
        fleet.deploy(app, instances=1, wait=False, extra={
            "services": {"db": {"type": "postgresql"}}, "backups": {"schedule": f"every {EVERY}s"}})
        first = wait_for("the first scheduled backup", lambda: min(backup_slots(fleet, app), default=None),
                         timeout=120, interval=0.2)
        kills, takeovers, slot = [], [], first
        for offset in KILL_AT:
            # The kill lands on the first boundary after the last one killed at has its backup, so that each
            # slot has a leader for most of it: a slot no leader could reach at all is missed by design.
            wait_for(f"the backup of slot {slot}", lambda: slot in backup_slots(fleet, app), timeout=30,
                     interval=0.1)
            slot = (int(time.time()) // EVERY + 1) * EVERY
            killed, took = kill_leader_at(fleet, slot, offset)
            kills.append(killed)
            takeovers.append(took)
        last = slot + EVERY
        wait_for(f"the backup of slot {last}", lambda: last in backup_slots(fleet, app), timeout=30, interval=0.1)
        got = count(backup_slots(fleet, app), first, last)
        died = fleet.died()
        temps, scratch = leftovers(fleet, services["backup_dir"])
        figures.record("12 backups: leader killed at slots", detect=max(takeovers), lost=got["skips"],
                       died=len(died), note=f"{got['slots']} slots, {got['backups']} backups, {got['duplicates']} "
                                            f"duplicates, {got['unverified']} unverified; killed {', '.join(kills)}; "
                                            f"left: {temps} temp files (removed past 60 s), {scratch} scratch databases")
        assert (got["duplicates"], got["skips"], got["unverified"], got["backups"]) == (0, 0, 0, got["slots"]), got
        assert not died, f"daemons died: {died}"
    finally:
        fleet.down()
