"""Logs and exec streams over the real bus: a reconciler's Relay and an agent's Streams on
real ZeroMQ sockets in one green process, with real files and real child processes.

What matters here: lines and bytes arrive whole and in order, a slow reader holds
the agent to its credit window (it never runs ahead), rotation and unknown
instances are handled, exec runs in the instance's environment on pipes or a
pty, and a client that goes away hangs the command up.
"""
import corral.green

corral.green.patch()

import base64  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402

from corral.wire.bus import BusClient, BusServer  # noqa: E402
from nodeagent.instance import Instance, State  # noqa: E402
from nodeagent.sessions import Streams  # noqa: E402
from reconciler.session_relay import Relay  # noqa: E402

KEY = bytes(range(32))
NODE = "node-1"
IID = "talk-web-1a2b"
IMAGE = "sha256:" + "ab" * 32


def wait_for(condition, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        eventlet.sleep(0.02)


class FakeInstance:
    """What exec reads of an instance: its assignment, spec, port, state and live pid."""

    def __init__(self, pid):
        self.id = IID
        self.assignment = {"id": IID, "app": "talk", "process": "web", "image": IMAGE}
        self.spec = {"env": {"GREETING": "marmalade"}}
        self.port = 4321
        self.state = State.RUNNING
        self.message = None
        self.gone = False
        self.finished = False
        self._pid = pid
        self.base_env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        self.identity = None
        self.node = NODE

    process_context = Instance.process_context   # the real one: what an instance's processes are given

    def alive_pid(self):
        return self._pid


class FakeAgent:
    def __init__(self, data_dir, images_dir):
        self.name = NODE
        self.data_dir = data_dir
        self.images = type("Images", (), {"images_dir": images_dir})()
        self.base_env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        self.instances = {}


class Pair:
    """A relay (reconciler side) and the streams of one agent, connected by the bus."""

    def __init__(self, tmp_path):
        self.images_dir = str(tmp_path / "images")
        image = os.path.join(self.images_dir, IMAGE.split(":")[1])
        os.makedirs(os.path.join(image, "venv", "bin"))
        os.makedirs(os.path.join(image, "app"))
        os.symlink(sys.executable, os.path.join(image, "venv", "bin", "python"))
        self.code_dir = os.path.join(image, "app")
        self.agent = FakeAgent(str(tmp_path / "data"), self.images_dir)
        self.server = BusServer("tcp://127.0.0.1:*", KEY, "r1", self._to_relay).start()
        self.client = BusClient([self.server.endpoint], KEY, NODE, self._to_agent).start()
        self.streams = Streams(self.agent, reply=self.client.send_to)
        self.relay = Relay(self.server.send, lambda node: 0.0, heartbeat_timeout=5.0, keepalive=0.5,
                           open_timeout=5.0)
        deadline = time.monotonic() + 10
        while NODE.encode() not in self.server.peers():
            assert time.monotonic() < deadline, "the agent's socket never reached the reconciler"
            self.client.send_all("ping", {})
            eventlet.sleep(0.05)

    def _to_relay(self, peer, msg):
        if msg.type in self.relay.types:
            self.relay.on_message(peer, msg)

    def _to_agent(self, endpoint, msg):
        if msg.type in self.streams.types:
            self.streams.on_message(endpoint, msg)

    def close(self):
        self.client.close()
        self.server.close()

    def log_folder(self):
        folder = os.path.join(self.agent.data_dir, "logs", IID)
        os.makedirs(folder, exist_ok=True)
        return folder

    def collect(self, session, until=lambda items: False, timeout=15.0):
        """Items of a session (keepalives left out) until its end or ``until(items)``."""
        got = []
        deadline = time.monotonic() + timeout
        for item in session.items():
            assert time.monotonic() < deadline, f"stream still going after {timeout}s: {got[-3:]}"
            if item:
                got.append(item)
            if "end" in item or until(got):
                break
        return got


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    yield p
    p.close()


def stamp(i):
    return f"2026-11-26T15:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z"


def write_lines(path, start, count, mode="a", width=0):
    with open(path, mode) as f:
        for i in range(start, start + count):
            f.write(f"{stamp(i)} out line {i}{'x' * width}\n")


def texts(items):
    return [raw.split(" ", 2)[2] for item in items for raw in item.get("data", b"").decode().split("\n")[:-1]]


# -- logs ---------------------------------------------------------------------

def test_tail_of_a_log_arrives_whole_and_ends(pair):
    write_lines(os.path.join(pair.log_folder(), "output.log"), 0, 100, mode="w")
    session = pair.relay.open(NODE, "logs_open", {"instance": IID, "tail": 5, "follow": False}, "logs")
    items = pair.collect(session)
    assert texts(items) == [f"line {i}" for i in range(95, 100)]
    assert {"caught_up": True} in items
    assert items[-1]["end"] == "end of the log" and not items[-1]["error"]


def test_a_log_that_does_not_exist_is_one_sentence(pair):
    session = pair.relay.open(NODE, "logs_open", {"instance": "nobody-web-0000"}, "logs")
    items = pair.collect(session)
    assert items == [{"end": f"instance nobody-web-0000 has no log on node {NODE}", "error": True,
                      "exit_code": None}]


def test_a_slow_reader_holds_the_agent_to_its_window(pair, monkeypatch):
    monkeypatch.setattr("nodeagent.sessions.CHUNK_BYTES", 4096)
    write_lines(os.path.join(pair.log_folder(), "output.log"), 0, 2000, mode="w", width=100)
    session = pair.relay.open(NODE, "logs_open", {"instance": IID}, "logs")
    items = session.items()
    got = []
    for _ in range(10):  # read one chunk at a time and give the agent every chance to run ahead
        got.append(next(items))
        channel = pair.streams.channels[session.id]
        # It has had its chance once it has heard the relay's latest credit and sent all that credit allows.
        wait_for(lambda: channel.window.acked == session.acked and not channel.window.has_room(),
                 "the agent to hear the relay's latest credit and use it up")
        consumed = len([i for i in got if "data" in i])
        assert channel.window.sent <= consumed + pair.relay.window, \
            f"the agent sent chunk {channel.window.sent} with only {consumed} consumed"
        assert session.queue.qsize() <= pair.relay.window
    rest = pair.collect(session)
    assert texts(got + rest) == [f"line {i}{'x' * 100}" for i in range(2000)]


def test_follow_goes_on_across_a_rotation_and_says_when_the_instance_ends(pair):
    folder = pair.log_folder()
    current = os.path.join(folder, "output.log")
    write_lines(current, 0, 3, mode="w")
    inst = FakeInstance(os.getpid())
    pair.agent.instances[IID] = inst
    session = pair.relay.open(NODE, "logs_open", {"instance": IID, "follow": True, "tail": 1}, "logs")
    items = session.items()
    seen = []

    def until(n):
        while len(texts(seen)) < n:
            item = next(items)
            if item:
                seen.append(item)

    until(1)
    assert texts(seen) == ["line 2"]
    write_lines(current, 3, 2)
    os.rename(current, current + ".1")
    write_lines(current, 5, 2, mode="w")
    until(5)
    assert texts(seen) == [f"line {i}" for i in range(2, 7)]
    inst.finished, inst.message = True, "exited with code 3"
    end = [i for i in items if i][-1]
    assert end["end"] == f"instance {IID} ended (exited with code 3)"


def test_previous_run_over_the_bus(pair):
    current = os.path.join(pair.log_folder(), "output.log")
    with open(current, "w") as f:
        f.write(f"{stamp(1)} sys run 1 started pid 10\n{stamp(2)} err RuntimeError: boom\n"
                f"{stamp(3)} sys run 1 exited with code 1\n{stamp(4)} sys run 2 started pid 11\n"
                f"{stamp(5)} out fine now\n")
    session = pair.relay.open(NODE, "logs_open", {"instance": IID, "previous": True, "follow": True}, "logs")
    assert texts(pair.collect(session)) == ["run 1 started pid 10", "RuntimeError: boom", "run 1 exited with code 1"]


def test_a_client_that_goes_away_ends_the_agents_reader(pair):
    write_lines(os.path.join(pair.log_folder(), "output.log"), 0, 10, mode="w")
    pair.agent.instances[IID] = FakeInstance(os.getpid())
    session = pair.relay.open(NODE, "logs_open", {"instance": IID, "follow": True}, "logs")
    pair.collect(session, until=lambda items: {"caught_up": True} in items)
    assert session.id in pair.streams.channels
    pair.relay.close(session)
    wait_for(lambda: session.id not in pair.streams.channels, "the agent to drop the stream")


# -- exec ---------------------------------------------------------------------

def output(items, fd="out"):
    return b"".join(base64.b64decode(i[fd]) for i in items if fd in i).decode()


def exec_open(pair, argv, **extra):
    pair.agent.instances[IID] = FakeInstance(os.getpid())
    return pair.relay.open(NODE, "exec_open", {"instance": IID, "argv": argv, "tty": False, **extra}, "exec")


def test_exec_runs_in_the_instance_environment_and_returns_its_exit_code(pair):
    session = exec_open(pair, ["python", "-c", "import os, sys; print(os.getcwd(), os.environ['GREETING'], "
                                               "os.environ['CORRAL_INSTANCE'], os.environ['PORT'], "
                                               "os.environ['VIRTUAL_ENV']); print('oops', file=sys.stderr); "
                                               "sys.exit(7)"])
    items = pair.collect(session)
    cwd, greeting, iid, port, venv = output(items).split()
    assert os.path.realpath(cwd) == os.path.realpath(pair.code_dir)
    assert (greeting, iid, port) == ("marmalade", IID, "4321")
    assert venv.endswith("/venv")
    assert output(items, "err") == "oops\n"
    assert items[-1]["exit_code"] == 7


def test_exec_pipes_stdin_through_to_its_end(pair):
    session = exec_open(pair, ["python", "-c", "import sys; print(sys.stdin.read().upper(), end='')"])
    for part in (b"hello ", b"over ", b"the bus"):
        session.send_input(part, False)
    session.send_input(b"", True)
    items = pair.collect(session)
    assert output(items) == "HELLO OVER THE BUS" and items[-1]["exit_code"] == 0


def test_exec_on_a_pty_has_a_terminal_of_the_asked_size(pair):
    session = exec_open(pair, ["python", "-c", "import os, sys; print(sys.stdin.isatty(), os.get_terminal_size())"],
                        tty=True, rows=33, cols=101)
    items = pair.collect(session)
    text = output(items)
    assert "True" in text and "columns=101, lines=33" in text and items[-1]["exit_code"] == 0


def test_exec_pty_forwards_ctrl_c_and_a_resize(pair):
    # The handler writes with os.write: a print() from a signal handler that lands while the
    # main code is still inside print('ready') fails with "reentrant call inside BufferedWriter"
    # (seen on a loaded machine, where the resize can come before that flush returns).
    script = ("import signal, sys, os\n"
              "signal.signal(signal.SIGWINCH, lambda *a: os.write(1, f'size {os.get_terminal_size(0)}\\n'.encode()))\n"
              "print('ready', flush=True)\n"
              "try:\n    sys.stdin.readline()\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
              "    sys.exit(4)\n")
    session = exec_open(pair, ["python", "-c", script], tty=True, rows=24, cols=80)
    items = session.items()
    seen = []

    def until(word):
        while word not in output(seen):
            item = next(items)
            if item:
                seen.append(item)
            assert "end" not in item, f"the stream ended before {word!r} was seen: {item}; output {output(seen)!r}"
    until("ready")
    session.resize(40, 120)
    until("columns=120, lines=40")
    session.send_input(b"\x03", False)
    until("interrupted")
    end = [i for i in items if i][-1]
    assert end["exit_code"] == 4


def test_exec_of_a_missing_command_or_instance_is_one_sentence(pair):
    items = pair.collect(exec_open(pair, ["no-such-program-here"]))
    assert items[-1]["error"] and "'no-such-program-here' was not found in the instance" in items[-1]["end"]
    del pair.agent.instances[IID]
    session = pair.relay.open(NODE, "exec_open", {"instance": "gone-web-0000", "argv": ["true"], "tty": False},
                              "exec")
    assert pair.collect(session)[-1]["end"] == f"instance gone-web-0000 is not on node {NODE}"


def test_a_client_that_goes_away_hangs_the_command_up(pair):
    session = exec_open(pair, ["python", "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"])
    items = pair.collect(session, until=lambda got: output(got).strip().isdigit())
    pid = int(output(items))
    pair.relay.close(session)

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] == "Z"
        except OSError:
            return True
    wait_for(gone, f"the command (pid {pid}) to be hung up")


def test_a_token_refused_while_its_exec_runs_ends_the_stream_with_why_and_hangs_the_command_up(pair):
    """The API gives each stream its token's check (reconciler/credentials.py Credentials.checker): once it
    says the token is revoked, the stream's next item is its end with that sentence, and closing it (as the
    API does when the body ends) hangs the command up on the node."""
    said = []
    session = exec_open(pair, ["python", "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"])
    items = session.items(lambda: said[0] if said else None)
    got = []
    while not output(got).strip().isdigit():
        got.append(next(items))
    pid = int(output(got))
    said.append("API token 'ops' was revoked at 2026-12-03T18:00:00Z; ask an admin for a new one")
    assert [i for i in items] == [{"end": said[0], "error": True}]
    pair.relay.close(session)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z",
             f"the command (pid {pid}) to be hung up")


def test_an_agent_that_does_not_answer_ends_the_stream_with_a_sentence(tmp_path):
    server = BusServer("tcp://127.0.0.1:*", KEY, "r1", lambda peer, msg: None).start()
    client = BusClient([server.endpoint], KEY, NODE, lambda endpoint, msg: None).start()  # hears nothing
    try:
        relay = Relay(server.send, lambda node: 0.0, heartbeat_timeout=5.0, keepalive=0.2, open_timeout=1.0)
        while NODE.encode() not in server.peers():
            client.send_all("ping", {})
            eventlet.sleep(0.05)
        session = relay.open(NODE, "logs_open", {"instance": IID}, "logs")
        items = [i for i in session.items() if i]
        assert items == [{"end": f"node {NODE} did not answer within 1s", "error": True}]
    finally:
        client.close()
        server.close()
