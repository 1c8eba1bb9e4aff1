"""An app cannot hold up another app's health checks.

One prober runs every instance's checks of a node (nodeagent/prober.py): a
check that answers at once runs in the prober's own thread, one that must
wait in a thread of its own. A hostile app makes its own check wait as long
as its timeout allows (it fills its listen backlog with connections of its
own, so the agent's connect is never answered): the other app's checks must
go on meanwhile, each interval, through the real agent.
"""
import corral.green

corral.green.patch()

import textwrap  # noqa: E402

from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    agent, assignment, image_server, key_file, reconciler, wait_for)

# Listens with a backlog of 0 and fills it with its own connections, never accepted: a connect to
# it stays in progress until the connecting side gives up.
STALLS = ["python", "-c", textwrap.dedent("""\
    import errno, os, socket, time
    port = int(os.environ["PORT"])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(0)
    held = []
    for _ in range(64):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        held.append(c)
        if c.connect_ex(("127.0.0.1", port)) in (errno.EINPROGRESS, errno.EALREADY):
            break
    time.sleep(3600)
    """)]

# Accepts 20 connections (its health checks), then stops listening: its checks fail from then on.
TURNS_SICK = ["python", "-c", textwrap.dedent("""\
    import os, socket, time
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(os.environ["PORT"])))
    s.listen(16)
    for _ in range(20):
        s.accept()[0].close()
    s.close()
    time.sleep(3600)
    """)]


def test_an_app_whose_check_never_answers_holds_up_no_other_apps_checks(agent, reconciler, image_server):
    agent()
    reconciler.assign([
        assignment("stall-web-1", image_server, STALLS, app="stall",
                   health={"tcp": True, "interval": 0.1, "timeout": 8}),
        assignment("sick-web-1", image_server, TURNS_SICK, app="sick",
                   health={"tcp": True, "interval": 0.1, "timeout": 1, "failures": 1000}),
    ], epoch=1)
    wait_for("the other app ready", lambda: (i := reconciler.instance("sick-web-1")) and i["ready"])
    sick = wait_for("the other app's checks to see it stop listening", lambda: (
        i := reconciler.instance("sick-web-1")) and "refused" in (i["message"] or "") and i)
    assert not sick["ready"]
    stalled = reconciler.instance("stall-web-1")   # (its first check may have come before it listened)
    assert not stalled["ready"] and "timed out" not in (stalled["message"] or ""), (
        f"the other app's checks waited for the stalling app's: {stalled['message']!r}")
    stalled = wait_for("the stalling app's check to time out", lambda: (
        i := reconciler.instance("stall-web-1")) and "timed out" in (i["message"] or "") and i, timeout=30)
    assert not stalled["ready"] and stalled["restarts"] == 0
