"""`corral apply` refuses a bad manifest itself: it says what is wrong and where (file, line, field) and sends
no request, so nothing can be written. The whole bad corpus runs here; two of its manifests also go to a live
API with the client's checks bypassed, in tests/e2e/test_up.py."""
import pathlib

import pytest

from corral.cli import client as client_module
from corral.cli.main import main

BAD = sorted((pathlib.Path(__file__).parent.parent / "fixtures" / "manifests" / "bad").glob("*.yaml"))


def expected_sentences(path):
    prefix = "# expect: "
    return [line[len(prefix):] for line in path.read_text().splitlines() if line.startswith(prefix)]


@pytest.fixture
def no_requests(monkeypatch):
    """A configured client whose every request fails the test; the requests it was asked for."""
    asked = []

    def request(self, method, path, *args, **kwargs):
        asked.append(f"{method} {path}")
        raise AssertionError(f"corral apply sent {method} {path} for a manifest it should have refused")

    monkeypatch.setenv("CORRAL_API", "http://127.0.0.1:9")
    monkeypatch.setenv("CORRAL_TOKEN", "t0ken")
    monkeypatch.setattr(client_module.Client, "request", request)
    return asked


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_apply_refuses_a_bad_manifest_before_any_request_naming_file_line_and_field(path, no_requests, monkeypatch,
                                                                                      capsys):
    expected = expected_sentences(path)
    assert expected, f"{path.name} declares no '# expect: ' line"
    monkeypatch.chdir(path.parent)
    code = main(["apply", "-f", path.name])
    out, err = capsys.readouterr()
    assert no_requests == []
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("error: "), f"the first line is not an error sentence: {err!r}"
    assert sorted([lines[0][len("error: "):]] + lines[1:]) == sorted(expected)


def test_a_good_manifest_does_reach_the_client(no_requests, monkeypatch, tmp_path):
    """The fixture is no vacuum: a manifest the loader accepts makes apply ask the API."""
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "app.py").write_text("print('hi')\n")
    (tmp_path / "hello.yaml").write_text("apiVersion: corral/v1\nkind: App\nmetadata: {name: hello}\n"
                                         "spec: {source: ./hello, processes: {web: {command: run}}}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="corral apply sent HEAD /v1/sources/sha256:"):
        main(["apply", "-f", "hello.yaml"])
    assert len(no_requests) == 1
