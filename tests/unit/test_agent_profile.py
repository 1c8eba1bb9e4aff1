"""The daemon's profile hook (CORRAL_AGENT_PROFILE): off without the variable; SIGUSR1 starts it afresh."""
import os
import pstats
import signal

from nodeagent.daemon import _Profile


def busy_before_restart():
    return sum(range(1000))


def busy_after_restart():
    return sum(range(1000))


def test_no_profile_without_the_variable(monkeypatch):
    monkeypatch.delenv("CORRAL_AGENT_PROFILE", raising=False)
    assert _Profile.from_env() is None


def test_sigusr1_drops_what_came_before_and_the_dump_is_a_pstats_file(tmp_path, monkeypatch):
    path = tmp_path / "agent.pstats"
    monkeypatch.setenv("CORRAL_AGENT_PROFILE", str(path))
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        profile = _Profile.from_env()
        busy_before_restart()
        os.kill(os.getpid(), signal.SIGUSR1)
        busy_after_restart()
        profile.dump()
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN  # a late SIGUSR1 no longer matters
    finally:
        signal.signal(signal.SIGUSR1, previous)
    names = {func[2] for func in pstats.Stats(str(path)).stats}
    assert "busy_after_restart" in names
    assert "busy_before_restart" not in names
