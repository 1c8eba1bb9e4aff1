"""`corral apply --wait`: the build's phases on stderr as they change, the log's tail when the build fails."""
import pytest

from corral.cli.client import ClientError
from corral.cli.commands import wait_available


class FakeClient:
    """Answers GET /v1/apps/NAME and /v1/builds?app=NAME from scripted sequences (the last answer repeats)."""

    def __init__(self, apps, builds):
        self.answers = {"apps": list(apps), "builds": list(builds)}

    def get(self, path):
        seq = self.answers["builds" if path.startswith("/v1/builds") else "apps"]
        return seq.pop(0) if len(seq) > 1 else seq[0]


def app(built=None, complete=False):
    conds = []
    if built is not None:
        conds.append({"type": "Built", "status": built[0], "message": built[1]})
    if complete:
        conds.append({"type": "Progressing", "status": "True", "reason": "Complete"})
    return {"observedGeneration": 1, "conditions": conds, "ready": 1, "desired": 1, "revision": "1"}


def building(progress):
    return [{"id": 7, "state": "building", "progress": progress}]


def test_each_new_phase_is_shown_once(capsys):
    client = FakeClient([app()] * 5 + [app(complete=True)],
                        [building("fetch"), building("resolve"), building("resolve"), building("install"),
                         building("pack"), [{"id": 7, "state": "succeeded"}]])
    wait_available(client, "hello", 1, timeout=10, poll=0)
    assert capsys.readouterr().err.splitlines() == [
        "app/hello build 7: fetch", "app/hello build 7: resolve", "app/hello build 7: install", "app/hello build 7: pack"]


def test_a_failed_build_shows_the_end_of_its_log(capsys):
    failed = [{"id": 7, "state": "failed", "log_tail": "$ uv pip compile ...\nerror: No solution found"}]
    client = FakeClient([app(built=("False", "uv could not resolve the requirements: nope"))], [failed])
    with pytest.raises(ClientError, match="app hello: the build failed: uv could not resolve the requirements: nope"):
        wait_available(client, "hello", 1, timeout=10, poll=0)
    assert capsys.readouterr().err.splitlines() == [
        "app/hello build 7 failed; the end of its log:", "  $ uv pip compile ...", "  error: No solution found"]
