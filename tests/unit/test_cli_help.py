"""Every `corral` verb explains itself, docs/CLI.md names exactly the verbs there are, and the fast path stays
fast: the argparse parser is walked (nested verbs like `rollout undo`, `node drain`, `delete gitsource`
included), and `corral --help` and the read-only verbs run in a subprocess that must not have imported
requests, jsonschema, eventlet or yaml. Behaviour only: no wall time is asserted here (bench/cli.py has
the figures)."""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from corral.cli.main import parser

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
HEAVY = ("requests", "jsonschema", "eventlet", "yaml")


def verbs(p, path=()):
    """``[(path, parser)]`` of every verb under ``p``, depth first; an alias is not a verb of its own."""
    found = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                found.append((path + (name,), sub))
                found += verbs(sub, path + (name,))
    return found


VERBS = verbs(parser())
IDS = [" ".join(path) for path, _ in VERBS]


def documented():
    """Every verb path docs/CLI.md names in a `corral ...` code span: ``{(verb,), (verb, nested)}``;
    ``a|b`` in a span names each of a and b."""
    text = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8").replace("\\|", "|")
    paths = set()
    for span in re.findall(r"`(corral [^`]+)`", text):
        words = span.split()[1:]
        firsts = words[0].split("|")
        paths.update((w,) for w in firsts)
        if len(words) > 1 and not words[1].startswith("-"):
            paths.update((f, s) for f in firsts for s in words[1].split("|"))
    return paths


def test_the_walk_finds_the_nested_verbs():
    """The test is no vacuum: the parser's verbs are there, nested ones included."""
    assert {"rollout undo", "node drain", "delete gitsource", "describe app", "get", "up"} <= set(IDS)


@pytest.mark.parametrize("path,verb", VERBS, ids=IDS)
def test_every_verb_says_what_it_does_and_shows_an_example(path, verb):
    name = " ".join(path)
    assert verb.description and verb.description.strip().endswith("."), f"corral {name} has no description"
    examples = [line.strip() for line in (verb.epilog or "").splitlines()]
    assert any(line.startswith(f"corral {name}") for line in examples), \
        f"the epilog of corral {name} has no example starting with `corral {name}`: {verb.epilog!r}"
    assert isinstance(verb.formatter_class("x"), argparse.RawDescriptionHelpFormatter)  # examples kept as written


@pytest.mark.parametrize("path,verb", VERBS, ids=IDS)
def test_every_argument_of_every_verb_has_a_help_string(path, verb):
    bare = [a.option_strings[0] if a.option_strings else a.dest for a in verb._actions
            if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert bare == [], f"corral {' '.join(path)}: no help for {bare}"


@pytest.mark.parametrize("path", [p for p, _ in VERBS], ids=IDS)
def test_every_verb_is_named_in_docs_cli(path):
    assert path in documented(), f"docs/CLI.md does not name `corral {' '.join(path)}`"


def test_docs_cli_names_no_verb_the_parser_lacks():
    known = {p for p, _ in VERBS}
    with_nested = {p[0] for p in known if len(p) == 2}
    unknown = [p for p in documented() if (len(p) == 1 and p not in known)
               or (len(p) == 2 and p[0] in with_nested and p not in known)]
    assert unknown == [], f"docs/CLI.md names commands the parser does not have: {sorted(unknown)}"


IMPORTED = """
import json, runpy, sys
sys.argv = ["corral"] + sys.argv[1:]
try:
    runpy.run_module("corral", run_name="__main__")
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported_by(argv, env=None):
    """``(exit code, modules loaded)`` of `corral ARGV` run to its end in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", IMPORTED] + argv, capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, **(env or {})), timeout=60)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def heavy(modules):
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_help_imports_none_of_the_heavy_libraries():
    code, modules = imported_by(["--help"])
    assert code == 0
    assert "corral.cli.main" in modules            # it did run the command
    assert heavy(modules) == []


@pytest.mark.parametrize("argv", [["get", "apps"], ["get", "instances", "-o", "json"], ["describe", "app", "x"],
                                  ["rollout", "history", "x"], ["node", "list"], ["logs", "x"]])
def test_a_read_only_verb_imports_none_of_the_heavy_libraries(argv, tmp_path):
    """Up to its request (to a port that refuses): the client's path, config file included."""
    from corral.cli.client import write_config
    write_config(["http://127.0.0.1:9"], "t0ken", {"XDG_CONFIG_HOME": str(tmp_path)})
    env = {"XDG_CONFIG_HOME": str(tmp_path), "CORRAL_API": "", "CORRAL_TOKEN": ""}
    code, modules = imported_by(argv, env)
    assert code == 1                               # no corral API answered: the request was made
    assert "http.client" in modules
    assert heavy(modules) == []


def test_apply_still_validates_with_jsonschema(tmp_path):
    """The fast path is no vacuum: a verb that takes manifests does load the validator."""
    (tmp_path / "bad.yaml").write_text("apiVersion: corral/v1\nkind: App\nmetadata: {name: x}\nspec: {}\n")
    code, modules = imported_by(["apply", "-f", str(tmp_path / "bad.yaml")],
                                {"CORRAL_API": "http://127.0.0.1:9", "CORRAL_TOKEN": "t"})
    assert code == 1
    assert "jsonschema" in modules
