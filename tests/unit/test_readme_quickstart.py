"""The README's quickstart as the e2e test reads it (tests/e2e/readme.py): every command found,
each with an expectation, so a README edit cannot add a command that nothing checks."""
import pytest

from tests.e2e.readme import EXPECT, Step, quickstart


def test_every_quickstart_command_runs_the_venvs_corral_and_has_an_expectation():
    steps = quickstart()
    assert len(steps) >= 10
    for step in steps:
        assert step.argv[0] == ".venv/bin/corral", step
        assert step.verb in EXPECT, f"README command {step.line!r} has no expectation in tests/e2e/readme.py"


def test_the_edit_before_diff_is_read_from_its_comment():
    diff = next(s for s in quickstart() if s.verb == ("diff",))
    assert any("instances: 3" in note for note in diff.notes)


def test_a_readme_without_the_block_is_refused():
    with pytest.raises(AssertionError, match="no ```sh block after 'In another terminal:'"):
        quickstart("# corral\n\nno quickstart here\n")


@pytest.mark.parametrize("line, verb", [
    (".venv/bin/corral get apps -o json", ("get", "apps")),
    (".venv/bin/corral logs hello -f                  # every instance's output", ("logs",)),
    (".venv/bin/corral node drain node-1", ("node", "drain")),
    (".venv/bin/corral backup --to /tmp", ("backup",)),
])
def test_verb_and_trailing_comment(line, verb):
    step = Step(line, [])
    assert step.verb == verb and "#" not in " ".join(step.argv)
