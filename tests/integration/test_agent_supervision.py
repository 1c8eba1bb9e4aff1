"""The agent as a supervisor, with real processes: re-adoption across agent restarts,
health checks, restart policy and the backoff schedule from settings."""
import corral.green

corral.green.patch()

import os  # noqa: E402
import signal  # noqa: E402

from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    HTTP_SERVER, WAIT, agent, assignment, image_server, key_file, pid_gone, reconciler, running, wait_for)

SICK = ["python", "sick.py", "$PORT"]


def alive(pid):
    """True when ``pid`` runs and is no zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def from_new_agent(reconciler, first_started_at):
    """The latest report when it comes from an agent started after ``first_started_at``."""
    report = reconciler.latest()
    return report if report and report["started_at"] > first_started_at else None


def two_ready_servers(agent, reconciler, image_server):
    handle = agent()
    health = {"http": "/hello.txt", "interval": 0.2, "timeout": 1.0, "failures": 3, "initialDelay": 0}
    reconciler.assign([assignment(f"hello-web-{n}", image_server, HTTP_SERVER, health=health) for n in (1, 2)],
                      epoch=1)
    pids = {iid: wait_for(f"{iid} ready", lambda iid=iid: (i := running(reconciler, iid)) and i["ready"] and i)["pid"]
            for iid in ("hello-web-1", "hello-web-2")}
    return handle, pids


def test_a_sigkilled_agent_restarted_adopts_its_instances_with_the_same_pids(agent, reconciler, image_server):
    first, pids = two_ready_servers(agent, reconciler, image_server)
    started_at = reconciler.latest()["started_at"]
    first.proc.kill()
    first.proc.wait(timeout=WAIT)
    assert all(alive(pid) for pid in pids.values()), "killing the agent must not kill its instances"
    agent()  # no assign is sent again: the agent finds its instances in its own table
    report = wait_for("a report from the new agent with both ready", lambda: (r := from_new_agent(reconciler, started_at))
                      and all(i["ready"] for i in r["instances"]) and len(r["instances"]) == 2 and r)
    assert {i["id"]: i["pid"] for i in report["instances"]} == pids
    assert {i["restarts"] for i in report["instances"]} == {0}


def test_sigterm_leaves_the_instances_running_and_sigint_of_the_next_agent_stops_them(agent, reconciler, image_server):
    first, pids = two_ready_servers(agent, reconciler, image_server)
    started_at = reconciler.latest()["started_at"]
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=WAIT) == 0
    assert all(alive(pid) for pid in pids.values())
    second = agent()
    wait_for("both adopted and ready", lambda: (r := from_new_agent(reconciler, started_at))
             and sorted((i["pid"], i["ready"]) for i in r["instances"]) == sorted((p, True) for p in pids.values()))
    second.proc.send_signal(signal.SIGINT)
    assert second.proc.wait(timeout=WAIT) == 0
    # adopted groups are not the new agent's children: their leaders are reaped by whoever inherited them
    # (init, or the test process when an earlier test made it a subreaper), so a zombie counts as ended
    wait_for("every adopted process ended", lambda: not any(alive(pid) for pid in pids.values()))
    stopped = {i["id"]: i["message"] for r in reconciler.reports for i in r["instances"] if i["state"] == "stopped"}
    assert stopped == {"hello-web-1": "stopped", "hello-web-2": "stopped"}, "SIGTERM, not SIGKILL, ended them"


def test_an_instance_that_died_while_the_agent_was_down_is_restarted(agent, reconciler, image_server):
    first, pids = two_ready_servers(agent, reconciler, image_server)
    started_at = reconciler.latest()["started_at"]
    first.proc.kill()
    first.proc.wait(timeout=WAIT)
    os.killpg(pids["hello-web-1"], signal.SIGKILL)
    wait_for("the instance gone", lambda: not alive(pids["hello-web-1"]))
    agent()
    report = wait_for("both ready under the new agent", lambda: (r := from_new_agent(reconciler, started_at))
                      and len(r["instances"]) == 2 and all(i["ready"] for i in r["instances"]) and r)
    by_id = {i["id"]: i for i in report["instances"]}
    assert by_id["hello-web-2"]["pid"] == pids["hello-web-2"] and by_id["hello-web-2"]["restarts"] == 0
    assert by_id["hello-web-1"]["pid"] != pids["hello-web-1"] and by_id["hello-web-1"]["restarts"] == 1
    assert "while the agent was down" in by_id["hello-web-1"]["message"]


def test_a_finished_instance_stays_finished_across_an_agent_restart(agent, reconciler, image_server):
    first = agent()
    reconciler.assign([assignment("hello-once-1", image_server, ["python", "-c", "pass"], port=False,
                                  restart="on-failure")], epoch=1)
    done = wait_for("stopped", lambda: (i := reconciler.instance("hello-once-1")) and i["state"] == "stopped" and i)
    assert (done["exit_code"], done["restarts"]) == (0, 0), "exit 0 under on-failure is done, not a crash loop"
    started_at = reconciler.latest()["started_at"]
    first.proc.kill()
    first.proc.wait(timeout=WAIT)
    agent()
    report = wait_for("a report from the new agent", lambda: (r := from_new_agent(reconciler, started_at))
                      and r["instances"] and r["instances"][0]["state"] != "pending" and r)
    assert [(i["state"], i["restarts"], i["exit_code"]) for i in report["instances"]] == [("stopped", 0, 0)]


def test_http_check_gates_readiness_and_restarts_an_instance_that_turns_sick(agent, reconciler, image_server, tmp_path):
    agent()
    sickfile = tmp_path / "sick"
    health = {"http": "/", "interval": 0.1, "timeout": 1.0, "failures": 3, "initialDelay": 0}
    reconciler.assign([assignment("hello-sick-1", image_server, SICK, env={"SICKFILE": str(sickfile)},
                                  health=health)], epoch=1)
    pid = wait_for("ready", lambda: (i := running(reconciler, "hello-sick-1")) and i["ready"] and i)["pid"]
    sickfile.write_text("")
    wait_for("reported not ready", lambda: (i := reconciler.instance("hello-sick-1")) and not i["ready"])
    restarted = wait_for("a restart for the failed checks", lambda: next(
        (i for r in reconciler.reports for i in r["instances"]
         if i["id"] == "hello-sick-1" and i["state"] == "backoff"), None))
    assert "health check failed 3 times in a row" in restarted["message"]
    assert "HTTP 500" in restarted["message"]
    assert pid_gone(pid)
    sickfile.unlink()
    again = wait_for("ready again after the restart", lambda: (i := running(reconciler, "hello-sick-1"))
                     and i["ready"] and i)
    assert again["restarts"] == 1 and again["pid"] != pid


def test_a_failing_check_keeps_a_new_instance_not_ready_without_restarting_it(agent, reconciler, image_server):
    agent()
    health = {"http": "/no-such-page", "interval": 0.1, "timeout": 1.0, "failures": 2, "initialDelay": 0}
    reconciler.assign([assignment("hello-web-1", image_server, HTTP_SERVER, health=health)], epoch=1)
    inst = wait_for("a not-ready message", lambda: (i := reconciler.instance("hello-web-1"))
                    and "HTTP 404" in (i["message"] or "") and i)
    assert (inst["state"], inst["ready"], inst["restarts"]) == ("starting", False, 0)
    count = len(reconciler.reports)
    wait_for("more reports", lambda: len(reconciler.reports) >= count + 5)
    assert reconciler.instance("hello-web-1")["pid"] == inst["pid"]


def test_tcp_and_exec_checks(agent, reconciler, image_server):
    agent()
    reconciler.assign([
        assignment("hello-tcp-1", image_server, HTTP_SERVER, health={"tcp": True, "interval": 0.1, "timeout": 1}),
        assignment("hello-exec-1", image_server, HTTP_SERVER,
                   health={"exec": ["python", "-c", "import os; assert os.path.exists('hello.txt')"],
                           "interval": 0.1, "timeout": 5}),
        assignment("hello-exec-2", image_server, HTTP_SERVER,
                   health={"exec": ["python", "-c", "raise SystemExit(4)"], "interval": 0.1, "timeout": 5}),
    ], epoch=1)
    wait_for("tcp ready", lambda: (i := running(reconciler, "hello-tcp-1")) and i["ready"])
    wait_for("exec ready", lambda: (i := running(reconciler, "hello-exec-1")) and i["ready"])
    inst = wait_for("exec failing", lambda: (i := reconciler.instance("hello-exec-2"))
                    and "exited with code 4" in (i["message"] or "") and i)
    assert not inst["ready"]


def test_the_backoff_schedule_comes_from_settings(agent, reconciler, image_server):
    agent(restart_backoff_first=0.1, restart_backoff_max=0.4)
    reconciler.assign([assignment("hello-crash-1", image_server, ["python", "-c", "raise SystemExit(3)"],
                                  port=False)], epoch=1)
    wait_for("four restarts", lambda: (i := reconciler.instance("hello-crash-1")) and i["restarts"] >= 4)
    backoffs = [i for r in reconciler.reports for i in r["instances"] if i["state"] == "backoff"]
    delays = {i["restarts"]: i["message"].rsplit("restarting in ", 1)[1] for i in backoffs}
    assert [delays[n] for n in range(4)] == ["0.1s", "0.2s", "0.4s", "0.4s"]
    assert all(i["backoff_until"] is not None and i["exit_code"] == 3 for i in backoffs)
