"""Scenario 13: nodes with credentials of their own, and a peer on one of them that acts as another.

The fleet's agents join with one-time tokens (`install-units --join`: no node holds the cluster key).
A peer inside n1's namespace, holding n1's credential as anything that breaks into n1 would, reports,
heartbeats and streams logs as n2 to both reconcilers for a few heartbeats, and reports under n1's own
name with n2's in the body. Every message is refused and counted (``impersonation``) on both; n2 stays
ready with its own address and capacity; the peer receives nothing meant for n2; the apps go on. Then
`corral node revoke n1` cuts n1 off on both reconcilers: its agent, still running, is refused, n1 is
lost after the grace and its instances are replaced on the other nodes."""
import json
import os
import subprocess
import sys
import time

from tests.cluster import figures
from tests.cluster.fleet import BUS_PORT, Fleet
from tests.e2e.cluster import ROOT, wait_for
from tests.impostor import CAPACITY


def rejected(fleet, r):
    return (fleet.get("/healthz", r) or {}).get("rejected_messages", {})


def test_a_peer_with_n1s_key_cannot_act_as_n2_and_a_revoked_n1_is_cut_off(datacentre, tmp_path):
    fleet = Fleet(datacentre, tmp_path, join=True)
    try:
        nodes = fleet.nodes()
        assert {n: v.get("credential") for n, v in nodes.items()} == {n: "own key" for n in ("n1", "n2", "n3")}
        for n in ("n1", "n2", "n3"):
            assert "CORRAL_SECRET_FILE" not in fleet.unit_env[n] and "CORRAL_JOIN_TOKEN" in fleet.unit_env[n]
        fleet.deploy("steady", instances=3)
        before = {i["id"]: (i["pid"], i["node"]) for i in fleet.serving("steady")}
        n2 = nodes["n2"]
        counted_before = {r: rejected(fleet, r).get("impersonation", 0) for r in ("r1", "r2")}

        buses = [f"tcp://{fleet.dc.hosts[r].address}:{BUS_PORT}" for r in ("r1", "r2")]
        seconds = 6 * fleet.timings["heartbeat"]
        done = subprocess.run(fleet.dc.argv("n1", [sys.executable, "-m", "tests.impostor",
                                                   os.path.join(fleet.workdir, "nodes", "n1"), "n2",
                                                   n2["address"], str(seconds), *buses]),
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        peer = json.loads(done.stdout.strip().splitlines()[-1])
        assert min(peer["sent"].values()) >= 2 * len(buses), peer["sent"]   # it did get its messages out
        wait_for("both reconcilers counting the impersonations", lambda: all(
            rejected(fleet, r).get("impersonation", 0) - counted_before[r] >= 4 for r in ("r1", "r2")), timeout=30)
        assert all(node in (None, "n1") for _, node in peer["heard"]), peer["heard"]
        fleet.heard_from_after(time.time(), timeout=30)   # the real n2's reports come on meanwhile
        for r in ("r1", "r2"):
            node = fleet.nodes_of(r)["n2"]
            assert node["state"] == "ready" and node["address"] == n2["address"]
            assert node["capacity"] != CAPACITY and node["capacity"]["cpu"] == n2["capacity"]["cpu"]
            assert rejected(fleet, r).get("signature", 0) == 0, "n1's key was taken for a forgery, not for n1"
        assert {i["id"]: (i["pid"], i["node"]) for i in fleet.serving("steady")} == before

        on_n1 = [i for i, (_, node) in before.items() if node == "n1"]
        assert on_n1, f"no instance on n1 to replace: {before}"
        revoked = fleet.corral("node", "revoke", "n1")
        assert "n1" in revoked.stdout
        wait_for("n1 lost to both reconcilers", lambda: all(
            (fleet.nodes_of(r).get("n1") or {}).get("state") == "lost" for r in ("r1", "r2")), timeout=60)
        assert fleet.daemons["n1"].proc.poll() is None, "n1's agent runs on, refused"
        wait_for("n1's instances replaced on the others", lambda: len(fleet.serving("steady")) == 3 and all(
            i["node"] != "n1" for i in fleet.serving("steady")) or None, timeout=120)
        refused = {r: rejected(fleet, r) for r in ("r1", "r2")}
        assert all(c.get("revoked", 0) + c.get("key refused", 0) > 0 for c in refused.values()), refused
        figures.record("13 n1's key acting as n2; n1 revoked", lost=len(on_n1), died=len(fleet.died()),
                       note=f"{sum(peer['sent'].values())} messages as n2 refused on both; "
                            f"{len(on_n1)} instance(s) of n1 replaced after the revoke")
        assert not fleet.died()
    finally:
        fleet.down()
