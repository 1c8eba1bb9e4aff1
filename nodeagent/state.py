"""The agent's own state on disk: the epoch fence and the instance table.

``<data_dir>/agent-state.json`` holds ``{"version": 1, "epoch": N}``: the
highest leader epoch the agent accepted, so that a restarted agent keeps
refusing a stale leader.

``<data_dir>/instances.json`` holds ``{"version": 1, "instances": {id: record}}``,
each record what :meth:`nodeagent.instance.Instance.persisted` returns (the
assignment, pid and start time, port, restart counts): what a restarted agent
needs to adopt the instances it finds still running.

``<data_dir>/runs.json`` holds ``{"version": 1, "runs": [id, ...]}``: the ids
of the runs (assignments whose spec says ``run``) this agent has started, the
newest :data:`RUNS_KEPT`, so that no run is started twice, even by an agent
restarted after the run ended and was forgotten (:class:`RunLedger`).

All are written atomically (temp file, fsync, rename, fsync of the folder): a
crash or a full disk leaves the old file or the new one, never half. Both are
0600 (the table holds every instance's env, secrets included), written through
a temporary name created with ``O_EXCL`` (:mod:`corral.private`); a file left
looser by an older agent is tightened when it is read.
"""
import json
import os

from corral import private

STATE_FILE = "agent-state.json"
TABLE_FILE = "instances.json"
RUNS_FILE = "runs.json"
RUNS_KEPT = 10000


def accept_epoch(highest, epoch):
    """Whether a command stamped ``epoch`` may act, when ``highest`` is the highest accepted so far.

    Equal is accepted: one leader sends many commands under one epoch.
    """
    return epoch >= highest


def load_state(data_dir):
    """The saved state (a dict with at least ``epoch``), or a fresh one when there is no file.

    A file that exists but cannot be read as a state raises ValueError naming
    the file: refusing to start is safer than forgetting the fence.
    """
    path = os.path.join(data_dir, STATE_FILE)
    try:
        private.tighten_file(path)
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return {"version": 1, "epoch": 0}
    except (OSError, ValueError) as e:
        raise ValueError(f"agent state file {path} cannot be read ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise ValueError(f"agent state file {path} has no integer 'epoch'")
    return state


def save_state(data_dir, state):
    """Write ``state`` to the state file atomically."""
    write_atomic(os.path.join(data_dir, STATE_FILE), json.dumps(state, sort_keys=True))


def load_table(data_dir):
    """The saved instance records (id -> record), or {} when there is no table.

    A table that cannot be read raises ValueError naming the file: starting
    without it would start a second copy of every instance.
    """
    path = os.path.join(data_dir, TABLE_FILE)
    try:
        private.tighten_file(path)
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"agent instance table {path} cannot be read ({e})") from None
    if not isinstance(table, dict) or not isinstance(table.get("instances"), dict):
        raise ValueError(f"agent instance table {path} has no 'instances' mapping")
    return table["instances"]


def table_text(records):
    """The instance table file's text for ``records`` (id -> record)."""
    return json.dumps({"version": 1, "instances": records}, sort_keys=True)


def save_table(data_dir, text):
    """Write the instance table (``text`` from :func:`table_text`) atomically."""
    write_atomic(os.path.join(data_dir, TABLE_FILE), text)


def write_atomic(path, text):
    """Replace ``path`` with ``text``, readable by the agent's user only (0600: the table holds
    every app's env): a temporary file created exclusively under a random name, fsync, rename,
    fsync of the folder (:func:`corral.private.write_private`).

    On any error (a full disk) the temp file is removed and the old file stays whole.
    """
    private.write_private(path, text)


class EpochFence:
    """The highest epoch accepted, kept on disk; :meth:`admit` decides each command."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.state = load_state(data_dir)

    @property
    def highest(self):
        """The highest epoch accepted so far (0 before any)."""
        return self.state["epoch"]

    def admit(self, epoch):
        """True when ``epoch`` may act; a higher epoch is saved before this returns True."""
        if not accept_epoch(self.highest, epoch):
            return False
        if epoch > self.highest:
            save_state(self.data_dir, {**self.state, "epoch": epoch})
            self.state = {**self.state, "epoch": epoch}
        return True


class RunLedger:
    """The ids of the runs this agent has started, kept on disk (``runs.json``)."""

    def __init__(self, data_dir):
        self.path = os.path.join(data_dir, RUNS_FILE)
        try:
            private.tighten_file(self.path)
            with open(self.path, encoding="utf-8") as f:
                ids = json.load(f)["runs"]
        except FileNotFoundError:
            ids = []
        except (OSError, ValueError, KeyError, TypeError) as e:
            # starting without it could start a run a second time
            raise ValueError(f"agent run ledger {self.path} cannot be read ({e})") from None
        self.order = [i for i in ids if isinstance(i, str)][-RUNS_KEPT:]
        self.ids = frozenset(self.order)

    def add(self, run_id):
        """Remember ``run_id`` on disk before this returns (call it before the run starts)."""
        if run_id in self.ids:
            return
        order = (self.order + [run_id])[-RUNS_KEPT:]
        write_atomic(self.path, json.dumps({"version": 1, "runs": order}))
        self.order, self.ids = order, frozenset(order)
