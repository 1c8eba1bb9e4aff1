"""What each health check result means: readiness, liveness restarts, and the spec's defaults."""
import pytest

from nodeagent.health import Check, Tracker, check_from_spec, next_check


def run(results, failures=3):
    tracker = Tracker(Check(kind="http", target="/", failures=failures))
    return [(v.ready, v.restart) for v in (tracker.record(ok, "seen") for ok in results)]


@pytest.mark.parametrize("results, expected", [
    pytest.param([True], [(True, False)], id="first-pass-ready"),
    pytest.param([False] * 5, [(False, False)] * 5, id="never-passed-never-restarted"),
    pytest.param([True, False, False, True, False, False, False],
                 [(True, False), (False, False), (False, False), (True, False),
                  (False, False), (False, False), (False, True)], id="docstring-example"),
    pytest.param([False, True, False, False, False], [(False, False), (True, False), (False, False),
                                                      (False, False), (False, True)], id="count-starts-after-ready"),
])
def test_verdicts(results, expected):
    assert run(results) == expected


def test_failures_one_restarts_at_the_first_failure_after_ready():
    assert run([True, False], failures=1) == [(True, False), (False, True)]


def test_the_reason_names_the_count_and_what_was_seen():
    tracker = Tracker(Check(kind="tcp", target=True, failures=2))
    tracker.record(True, "ok")
    assert tracker.record(False, "refused").reason == "not ready: health check failed 1 of 2 times (refused)"
    assert tracker.record(False, "refused").reason == "restarted: health check failed 2 times in a row (refused)"


@pytest.mark.parametrize("spec, expected", [
    ({"http": "/healthz"}, Check(kind="http", target="/healthz")),
    ({"tcp": True, "interval": 1, "timeout": 0.5, "failures": 1, "initialDelay": 2},
     Check(kind="tcp", target=True, interval=1.0, timeout=0.5, failures=1, initial_delay=2.0)),
    ({"exec": ["true"]}, Check(kind="exec", target=["true"])),
    (None, None),
])
def test_check_from_spec(spec, expected):
    assert check_from_spec(spec) == expected


def test_a_check_of_no_known_kind_is_an_error():
    with pytest.raises(ValueError, match="none of http, tcp or exec"):
        check_from_spec({"interval": 1})


def test_the_next_check_is_an_interval_later_on_the_shared_grid():
    assert next_check(100.012, 1.0, grid=0.05) == pytest.approx(101.0)
    assert next_check(100.03, 1.0, grid=0.05) == pytest.approx(101.05)
    assert next_check(100.0, 0.01, grid=0.05) == 100.0  # never before now
    # instances started at different moments fall due at the same instants
    assert {round(next_check(100 + k / 1000, 5.0, grid=0.05), 6) for k in range(20)} == {105.0}
