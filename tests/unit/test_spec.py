"""The app spec loader: good manifests come back with defaults, bad ones name file, line and field."""
import dataclasses
import io
import os
import pathlib

import jsonschema
import pytest

import schemas
from corral.spec import Document, SpecError, load_paths, process_command, validate_document

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "manifests"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))

HELLO = """\
apiVersion: corral/v1
kind: App
metadata: {name: hello}
spec:
  source: ./hello
  processes:
    web: {command: run}
"""


def expected_sentences(path):
    """The sentences a bad fixture declares on its `# expect: ` lines."""
    prefix = "# expect: "
    return [line[len(prefix):].rstrip("\n") for line in path.read_text().splitlines() if line.startswith(prefix)]


def load_errors(paths, **kwargs):
    with pytest.raises(SpecError) as caught:
        load_paths(paths, **kwargs)
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# -- good manifests ---------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(schemas.load("app"))


def test_minimal_app_gets_every_default_and_nothing_else():
    [hello] = load_paths([str(FIXTURES / "good" / "hello.yaml")])
    assert hello.doc == {
        "apiVersion": "corral/v1",
        "kind": "App",
        "metadata": {"name": "hello"},
        "spec": {
            "source": "./hello",
            "processes": {
                "web": {
                    "command": "python -m http.server $PORT",
                    "instances": 1,
                    "port": False,
                    "drainPeriod": "2s",
                    "stopGracePeriod": "30s",
                    "restart": "always",
                }
            },
            "update": {"maxSurge": "25%", "maxUnavailable": "25%", "minReady": "0s", "progressDeadline": "600s"},
            "placement": {"spread": True},
        },
    }
    assert (hello.kind, hello.name, hello.line) == ("App", "hello", 2)
    assert hello.base_dir == str(FIXTURES / "good")


def test_given_values_win_over_defaults_and_health_defaults_fill_only_a_given_check():
    [shop] = load_paths([str(FIXTURES / "good" / "full.yaml")])
    web = shop.doc["spec"]["processes"]["web"]
    worker = shop.doc["spec"]["processes"]["worker"]
    assert web["health"] == {"http": "/healthz", "interval": "500ms", "timeout": "1s", "failures": 5, "initialDelay": 10}
    assert (web["instances"], web["stopGracePeriod"], web["restart"]) == (2, "1m", "on-failure")
    assert worker["health"] == {"exec": ["python", "check.py"], "interval": "5s", "timeout": "2s",
                                "failures": 3, "initialDelay": "0s"}
    assert worker["instances"] == 0
    assert shop.doc["spec"]["update"] == {"maxSurge": 1, "maxUnavailable": "0%", "minReady": "5s", "progressDeadline": "10m"}
    assert shop.doc["spec"]["placement"] == {"nodeSelector": {"zone": "a"}, "spread": False}
    [hello] = load_paths([str(FIXTURES / "good" / "hello.yaml")])
    assert "health" not in hello.doc["spec"]["processes"]["web"]


def test_folder_is_read_recursively_in_sorted_order_skipping_empty_documents():
    documents = load_paths([str(FIXTURES / "good")])
    assert [(os.path.relpath(d.file, FIXTURES / "good"), d.line, d.name) for d in documents] == [
        ("full.yaml", 2, "shop"),
        ("hello.yaml", 2, "hello"),
        ("more/pair.yml", 4, "alpha"),
        ("more/pair.yml", 18, "beta"),
    ]
    assert documents[2].base_dir == str(FIXTURES / "good" / "more")


def test_merge_keys_copy_settings_and_explicit_keys_win():
    [alpha, _] = load_paths([str(FIXTURES / "good" / "more" / "pair.yml")])
    web, admin = alpha.doc["spec"]["processes"]["web"], alpha.doc["spec"]["processes"]["admin"]
    assert admin == {**web, "instances": 3}
    assert web["instances"] == 1
    admin["health"]["interval"] = "9s"
    assert web["health"]["interval"] == "5s", "an alias must not share one object between two fields"


@pytest.mark.parametrize("stdin", [HELLO, io.StringIO(HELLO)], ids=["text", "file"])
def test_stdin_is_read_once_and_resolves_against_the_current_folder(stdin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [hello] = load_paths(["-"], stdin=stdin)
    assert (hello.file, hello.line, hello.base_dir) == ("<stdin>", 1, str(tmp_path))


def test_a_file_named_twice_is_read_once(tmp_path):
    path = write(tmp_path, "hello.yaml", HELLO)
    assert [d.name for d in load_paths([path, str(tmp_path)])] == ["hello"]


def test_document_is_frozen():
    [hello] = load_paths(["-"], stdin=HELLO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hello.name = "other"
    assert isinstance(hello, Document)


# -- the bad corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_manifest_is_refused_with_its_sentences(path, monkeypatch):
    expected = expected_sentences(path)
    assert expected, f"{path.name} declares no '# expect: ' line"
    monkeypatch.chdir(path.parent)
    assert sorted(load_errors([path.name])) == sorted(expected)


def test_python_tags_are_never_constructed(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    text = HELLO.replace("./hello", f"!!python/object/apply:os.system ['touch {marker}']")
    [error] = load_errors(["-"], stdin=text)
    assert error.startswith("<stdin>:5: the tag !!python/object/apply:os.system is not allowed")
    assert not marker.exists()


# -- problems of files and of the whole apply --------------------------------------------------


def test_every_problem_of_every_file_is_reported_together(tmp_path):
    good = write(tmp_path, "a.yaml", HELLO)
    bad = write(tmp_path, "b.yaml", HELLO.replace("hello}", "hi}").replace("run}", "run, instances: -2}"))
    errors = load_errors([good, bad, str(tmp_path / "missing.yaml")])
    assert errors == [
        f"{bad}:7: spec.processes.web.instances: -2 is less than the minimum of 0",
        f"{tmp_path / 'missing.yaml'}: no such file or folder",
    ]


def test_names_must_be_unique_across_files(tmp_path):
    first = write(tmp_path, "a.yaml", HELLO)
    second = write(tmp_path, "sub/b.yaml", "# again\n" + HELLO)
    assert load_errors([first, second]) == [f"{second}:2: app 'hello' is defined twice (first in {first}:1)"]


def test_a_manifest_over_one_mib_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Not even YAML: the size alone must refuse it.
    (tmp_path / "big.yaml").write_bytes(b"{" * int(1.3 * (1 << 20)))
    assert load_errors(["big.yaml"]) == ["big.yaml: manifest is 1.3 MiB, over the 1 MiB limit"]


def test_exactly_one_mib_is_still_read(tmp_path):
    text = HELLO + "#" * ((1 << 20) - len(HELLO) - 1) + "\n"
    path = write(tmp_path, "edge.yaml", text)
    assert os.path.getsize(path) == 1 << 20
    assert [d.name for d in load_paths([path])] == ["hello"]


def test_stdin_over_one_mib_is_refused():
    assert load_errors(["-"], stdin="#" * (2 << 20)) == ["<stdin>: manifest is 2.0 MiB, over the 1 MiB limit"]


@pytest.mark.parametrize(
    "paths, stdin, expected",
    [
        ([], None, "no manifest was named"),
        (["-"], None, "-: stdin was named but there is no input to read"),
        (["-", "-"], HELLO, "-: stdin can be named only once"),
    ],
    ids=["nothing", "stdin-missing", "stdin-twice"],
)
def test_what_was_named_must_be_readable(paths, stdin, expected):
    assert load_errors(paths, stdin=stdin) == [expected]


def test_a_folder_without_manifests_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert load_errors([str(tmp_path)]) == [f"{tmp_path}: the folder holds no *.yaml or *.yml files"]


def test_a_file_that_is_not_utf8_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = HELLO.replace("run", "caf\xe9")
    (tmp_path / "latin.yaml").write_bytes(text.encode("latin-1"))
    offset = text.index("\xe9")
    assert load_errors(["latin.yaml"]) == [f"latin.yaml: is not UTF-8 text (bad byte at offset {offset})"]


def test_aliases_within_the_limit_are_expanded():
    text = HELLO + "  env: &e {A: a}\n  placement: {nodeSelector: *e}\n"
    [hello] = load_paths(["-"], stdin=text)
    assert hello.doc["spec"]["placement"]["nodeSelector"] == {"A": "a"}


# -- the server side --------------------------------------------------------------------------


def test_validate_document_fills_defaults_without_touching_its_input():
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "hello"},
           "spec": {"source": ".", "processes": {"web": {"command": ["run"]}}}}
    filled = validate_document(doc)
    assert filled["spec"]["processes"]["web"]["instances"] == 1
    assert "instances" not in doc["spec"]["processes"]["web"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["spec"]["processes"]["web"].update(instances=-1),
         "app 'hello': spec.processes.web.instances: -1 is less than the minimum of 0"),
        (lambda d: d["metadata"].update(nmae="x"), "app 'hello': metadata: unknown field 'nmae' (did you mean 'name'?)"),
        (lambda d: d.pop("spec"), "app 'hello': missing required field 'spec'"),
        (lambda d: d["metadata"].pop("name"), "app without a name: metadata: missing required field 'name'"),
        (lambda d: d.update(kind="Pod"), "document 'hello': kind: unknown kind 'Pod' (known: App, GitSource)"),
    ],
    ids=["minimum", "unknown-field", "missing-spec", "missing-name", "unknown-kind"],
)
def test_validate_document_names_the_document_and_the_field(change, expected):
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "hello"},
           "spec": {"source": ".", "processes": {"web": {"command": ["run"]}}}}
    change(doc)
    with pytest.raises(SpecError) as caught:
        validate_document(doc)
    assert caught.value.errors == [expected]


# -- commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, argv",
    [
        ("gunicorn app:app --bind 127.0.0.1:$PORT", ["gunicorn", "app:app", "--bind", "127.0.0.1:$PORT"]),
        ("python -c 'print(1 + 1)'", ["python", "-c", "print(1 + 1)"]),
        ('echo "$GREETING world"', ["echo", "$GREETING world"]),
        (["python", "app.py", "a b"], ["python", "app.py", "a b"]),
    ],
    ids=["words", "single-quotes", "double-quotes-keep-vars", "list-kept"],
)
def test_process_command(command, argv):
    assert process_command({"command": command}) == argv


@pytest.mark.parametrize("command", ["   ", []], ids=["blank-string", "empty-list"])
def test_process_command_refuses_an_empty_command(command):
    with pytest.raises(ValueError, match="has no program to run"):
        process_command({"command": command})


def test_a_scheduled_process_gets_its_run_defaults():
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "hello"},
           "spec": {"source": ".", "processes": {
               "web": {"command": "serve"},
               "report": {"command": "python manage.py send_reports", "schedule": "0 7 * * 1-5",
                          "timezone": "Europe/London", "concurrency": "forbid", "startingDeadline": "5m",
                          "activeDeadline": "1h", "history": {"succeeded": 3, "failed": 3}},
               "retry": {"command": "x", "schedule": "every 10s", "restart": "on-failure", "retries": 2}}}}
    procs = validate_document(doc)["spec"]["processes"]
    assert (procs["web"]["restart"], procs["web"]["instances"]) == ("always", 1)
    assert (procs["report"]["restart"], procs["report"]["instances"], procs["report"]["timezone"]) == (
        "never", 0, "Europe/London")
    assert (procs["retry"]["restart"], procs["retry"]["retries"], procs["retry"]["concurrency"]) == (
        "on-failure", 2, "allow")
