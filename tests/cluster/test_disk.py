"""Scenario 6: an agent's disk fills. It reports DiskPressure, refuses a new image with the reason, keeps running
what runs, and its state files are whole after; once room is made, the refused app starts by itself."""
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from nodeagent import disk
from nodeagent.state import load_state, load_table
from tests.cluster import figures
from tests.cluster.fleet import TIMINGS, Fleet, write_manifest
from tests.e2e.cluster import wait_for
from tests.support import fill, need

SIZE = 64 * 1024 * 1024
VICTIM = "n3"


def conditions(fleet, node):
    return (fleet.nodes().get(node) or {}).get("conditions") or []


def pinned(fleet, name, source):
    """A manifest of the test app from ``source`` (a folder name in the workdir), pinned to the victim node."""
    return write_manifest(fleet.workdir, name, 1, {"source": f"./{source}",
                                                   "placement": {"nodeSelector": {"host": VICTIM}}})


@pytest.fixture(scope="module")
def disk_full(datacentre, tmp_path_factory):
    """Scenario 6 run once: what it saw, for the tests below to judge."""
    workdir = tmp_path_factory.mktemp("disk-full")
    mount = workdir / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        need("root", f"scenario 6 skipped: cannot mount a tmpfs here: {done.stderr.strip()}")
    data, images = mount / "data", mount / "images"
    try:
        # A short restart backoff, so that the refused instance is retried soon after room is made.
        fleet = Fleet(datacentre, workdir, timings=dict(TIMINGS, restart_backoff_max=2),
                      agent_data_dirs={VICTIM: str(data)}, agent_images_dirs={VICTIM: str(images)})
        try:
            yield _scenario(fleet, mount, str(data))
        finally:
            fleet.down()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _scenario(fleet, mount, data):
    """Deploy ``steady`` on the victim, fill its disk, apply ``fresh`` there, fill it to the last byte, make room.

    Returns what was seen at each step; asserts only what the steps need to go on."""
    seen = {}
    fleet.apps.update({"steady", "fresh"})
    fleet.corral("apply", "-f", pinned(fleet, "steady", "app-src"), timeout=60)
    wait_for("steady serving on the small disk", lambda: len(fleet.serving("steady")) == 1, timeout=90)
    seen["steady"] = steady = fleet.serving("steady")[0]
    # The second app differs by one file: a new image, whose code layer the victim must fetch.
    shutil.copytree(os.path.join(fleet.workdir, "app-src"), os.path.join(fleet.workdir, "app-fresh"))
    with open(os.path.join(fleet.workdir, "app-fresh", "VERSION"), "w") as f:
        f.write("fresh\n")
    seen["pressure_before"] = "DiskPressure" in conditions(fleet, VICTIM)

    # 1. Below the threshold: DiskPressure, and the new image is refused with the reason.
    fill(mount, disk.threshold(SIZE) // 2)
    filled = time.monotonic()
    wait_for("DiskPressure on the victim", lambda: "DiskPressure" in conditions(fleet, VICTIM), timeout=30,
             interval=0.1)
    seen["detect"] = time.monotonic() - filled
    seen["nodes_json"] = json.loads(fleet.corral("get", "nodes", "-o", "json").stdout)
    fleet.corral("apply", "-f", pinned(fleet, "fresh", "app-fresh"), timeout=60)
    seen["refused"] = wait_for(
        "the fresh instance refused for lack of disk space",
        lambda: [i for i in fleet.instances("fresh") if "not enough disk space" in (i["message"] or "")],
        timeout=120, interval=0.2)[0]
    seen["wide"] = fleet.corral("get", "instances", "-o", "wide").stdout
    seen["describe"] = fleet.corral("describe", "app", "fresh").stdout

    # 2. To the last byte: the agent keeps going, and what ran runs on.
    fill(mount, 0)
    # judged once the full node has gone on reporting past a backoff and four heartbeats (not after a sleep)
    fleet.heard_from_after(time.time() + 4 * fleet.timings["heartbeat"] + fleet.timings["restart_backoff_max"],
                           nodes=[VICTIM])
    seen["agent_alive"] = fleet.daemons[VICTIM].alive()
    seen["agent_log"] = fleet.daemons[VICTIM].tail()
    seen["steady_when_full"] = fleet.serving("steady")
    seen["answer_when_full"] = requests.get(f"http://{steady['address']}:{steady['port']}/", timeout=5).json()
    # The state files, read the way a restarted agent reads them (they raise on a half-written file).
    seen["state"], seen["table"] = load_state(data), load_table(data)

    # 3. Room made: the pressure clears and the refused app starts by itself.
    for name in os.listdir(mount):
        if name.startswith("ballast"):
            os.unlink(os.path.join(mount, name))
    freed = time.monotonic()
    wait_for("DiskPressure cleared", lambda: "DiskPressure" not in conditions(fleet, VICTIM), timeout=30,
             interval=0.1)
    wait_for("fresh serving", lambda: len(fleet.serving("fresh")) == 1, timeout=60, interval=0.2)
    seen["recover"] = time.monotonic() - freed
    seen["steady_after"] = fleet.serving("steady")
    seen["died"] = fleet.died()
    figures.record("6 agent disk full", detect=seen["detect"], recover=seen["recover"],
                   lost=1 - len(seen["steady_after"]), died=len(seen["died"]),
                   note="detect = filled -> DiskPressure; new image refused for disk space; "
                        "recover = room made -> the refused app serving")
    return seen


def test_a_full_disk_shows_pressure_refuses_the_new_image_and_keeps_what_runs(disk_full):
    seen, steady = disk_full, disk_full["steady"]
    assert steady["node"] == VICTIM and not seen["pressure_before"]
    victim = [n for n in seen["nodes_json"] if n["name"] == VICTIM][0]
    assert "DiskPressure" in victim["conditions"], "get nodes -o json does not show the condition"
    assert seen["refused"]["state"] in ("failed", "backoff", "pending"), seen["refused"]
    assert "not enough disk space to unpack it" in seen["wide"], seen["wide"]
    assert seen["agent_alive"], f"the agent died on a full disk:\n{seen['agent_log']}"
    unchanged = [(steady["id"], steady["pid"])]
    assert [(i["id"], i["pid"]) for i in seen["steady_when_full"]] == unchanged, "the running instance changed"
    assert seen["answer_when_full"]["instance"] == steady["id"]
    assert [(i["id"], i["pid"]) for i in seen["steady_after"]] == unchanged
    assert not seen["died"], f"daemons died: {seen['died']}"


def test_the_state_files_are_whole_after_a_full_disk(disk_full):
    state, table, steady = disk_full["state"], disk_full["table"], disk_full["steady"]
    assert state["epoch"] >= 1
    assert steady["id"] in table and table[steady["id"]]["pid"] == steady["pid"]


def test_describe_says_why_the_image_was_refused(disk_full):
    assert "not enough disk space" in disk_full["describe"], disk_full["describe"]
