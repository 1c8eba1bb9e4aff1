"""Node labels from a file: a YAML mapping of strings, each error naming the file and key."""
import pytest

from corral.cli.main import _agent_labels, parser
from nodeagent.facts import labels_from_file


def test_labels_file_values_become_strings_and_flags_win(tmp_path):
    f = tmp_path / "labels.yaml"
    f.write_text("zone: a\nrack: 12\nssd: true\n")
    assert labels_from_file(str(f)) == {"zone": "a", "rack": "12", "ssd": "true"}
    args = parser().parse_args(["agent", "--name", "n", "--reconciler", "tcp://x:1", "--data-dir", "d",
                                "--secret-file", "k", "--labels-file", str(f), "--label", "zone=b"])
    assert _agent_labels(args) == {"zone": "b", "rack": "12", "ssd": "true"}


@pytest.mark.parametrize("text, sentence", [
    ("- a\n", "must be a mapping"),
    ("zone: [a]\n", "the value of 'zone' must be a string"),
    ("'bad key!': x\n", "'bad key!' is not a label name"),
])
def test_bad_labels_files(tmp_path, text, sentence):
    f = tmp_path / "labels.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=sentence) as e:
        labels_from_file(str(f))
    assert str(f) in str(e.value)
