"""./run-tests with no arguments runs the suite in two lanes at once (scripts/lanes.py)."""
import importlib.util
import pathlib

from tests.conftest import TIERS

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("lanes", ROOT / "scripts" / "lanes.py")
lanes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lanes)


def test_every_tier_runs_in_exactly_one_lane():
    assert lanes.check_lanes(TIERS) == ([], [])


def test_a_tier_left_out_or_run_twice_is_named():
    assert lanes.check_lanes(TIERS + ("soak",)) == (["tests/soak"], [])
    saved = dict(lanes.LANES)
    try:
        lanes.LANES["parts"] = lanes.LANES["parts"] + ["tests/e2e"]
        assert lanes.check_lanes(TIERS) == ([], ["tests/e2e"])
    finally:
        lanes.LANES.clear()
        lanes.LANES.update(saved)


def test_the_run_fails_when_either_lane_fails_and_a_signal_reads_as_a_shell_says_it():
    assert lanes.worst([0, 0]) == 0
    assert lanes.worst([0, 1]) == 1
    assert lanes.worst([2, 1]) == 2
    assert lanes.worst([0, -15]) == 143
