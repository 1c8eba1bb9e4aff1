"""Instance logs through the capture process, with a real agent and real apps: the file contract
of nodeagent/README.md (stamps, streams, run markers, rotation), and no line lost while the
agent is killed and restarted under an app that floods its output."""
import corral.green

corral.green.patch()

import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402

from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    WAIT, agent, assignment, image_server, key_file, reconciler, running, wait_for)

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (out|err|sys) (.*)$")

CRASH = ["python", "-c", "import sys; print('to out', flush=True); print('to err', file=sys.stderr, flush=True); "
                         "raise SystemExit(3)"]

# Writes LINES numbered lines of about 100 bytes in bursts, then creates $DONE and idles.
FLOOD = ["python", "-c", "import os, sys, time\n"
                         "n = int(os.environ['LINES'])\n"
                         "for i in range(n):\n"
                         "    sys.stdout.write(f'{i:08d} ' + 'x' * 90 + '\\n')\n"
                         "    if i % 2000 == 1999:\n"
                         "        sys.stdout.flush(); time.sleep(0.05)\n"
                         "sys.stdout.flush()\n"
                         "open(os.environ['DONE'], 'w').close()\n"
                         "time.sleep(600)\n"]


def log_files(folder):
    """The instance's log files, oldest first: output.log.N ... output.log.1, output.log."""
    rotated = sorted((f for f in os.listdir(folder) if f.startswith("output.log.")),
                     key=lambda f: -int(f.rsplit(".", 1)[1]))
    return [os.path.join(folder, f) for f in rotated + ["output.log"] if os.path.exists(os.path.join(folder, f))]


def parsed(folder):
    """Every line of the instance's logs, oldest first, as ``(stamp, stream, text)``; fails on a malformed line."""
    out = []
    for path in log_files(folder):
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = LINE.match(line.rstrip("\n"))
                assert m and line.endswith("\n"), f"{path}: malformed line {line!r}"
                out.append(m.groups())
    return out


def test_each_run_is_marked_and_both_streams_are_stamped(agent, reconciler, image_server):
    handle = agent(restart_backoff_first=0.1, restart_backoff_max=0.1)
    reconciler.assign([assignment("hello-crash-1", image_server, CRASH, port=False)], epoch=1)
    folder = handle.data_dir / "logs" / "hello-crash-1"
    wait_for("a third run", lambda: folder.exists() and any(t.startswith("run 3 started") for _, s, t in parsed(folder)))
    lines = parsed(folder)
    first = [(s, t) for _, s, t in lines[:4]]
    assert re.fullmatch(r"run 1 started pid \d+", first[0][1]) and first[0][0] == "sys"
    assert sorted(first[1:3]) == [("err", "to err"), ("out", "to out")]
    assert first[3] == ("sys", "run 1 exited with code 3")
    assert [s for s, _, _ in lines] == sorted(s for s, _, _ in lines), "stamps never go back"
    inst = reconciler.instance("hello-crash-1")
    assert inst["exit_code"] == 3, "the reported exit code is the app's, not the capture process's"


def test_no_line_is_lost_while_the_agent_is_killed_and_restarted_under_a_flood(agent, reconciler, image_server,
                                                                              tmp_path):
    lines, limit = 30000, 64 * 1024
    first = agent(log_max_bytes=limit, log_keep=100)
    done = tmp_path / "done"
    reconciler.assign([assignment("hello-flood-1", image_server, FLOOD, port=False,
                                  env={"LINES": str(lines), "DONE": str(done)})], epoch=1)
    folder = first.data_dir / "logs" / "hello-flood-1"
    pid = wait_for("the app writing", lambda: folder.exists() and any(s == "out" for _, s, _ in parsed(folder))
                   and reconciler.instance("hello-flood-1")["pid"])
    started_at = reconciler.latest()["started_at"]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=WAIT)
    wait_for("the app done writing with no agent running", done.exists, timeout=60)
    agent(log_max_bytes=limit, log_keep=100)
    wait_for("adopted by the new agent", lambda: reconciler.latest()["started_at"] > started_at
             and (i := reconciler.instance("hello-flood-1")) and i["state"] == "running" and i["pid"] == pid)
    got = parsed(folder)
    numbers = [int(t.split()[0]) for _, s, t in got if s == "out"]
    assert numbers == list(range(lines)), "every line once, in order, across the rotated files"
    assert all(os.path.getsize(p) <= limit for p in log_files(folder))
    assert len(log_files(folder)) > 10, "the log was rotated"
    markers = [t for _, s, t in got if s == "sys"]
    assert len(markers) == 1 and markers[0].startswith("run 1 started pid "), "one run: nothing was restarted"
    app = int(markers[0].rsplit(" ", 1)[1])
    with open(f"/proc/{app}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == pid, "the app is the reported group leader's child"
