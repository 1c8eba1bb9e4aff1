"""The agent's own state on disk, and the epoch fence.

``<data_dir>/agent-state.json`` holds ``{"version": 1, "epoch": N}``: the
highest leader epoch the agent accepted, so that a restarted agent keeps
refusing a stale leader. It is written atomically (temp file, fsync, rename,
fsync of the folder): a crash leaves the old file or the new one, never half.
"""
import json
import os

STATE_FILE = "agent-state.json"


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
    path = os.path.join(data_dir, STATE_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
