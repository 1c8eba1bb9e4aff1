"""DESIGN's layers, checked on the import graph (import-linter follows imports through other
modules, where reading a module's own text cannot): the contracts are in pyproject.toml."""
import ast
import os
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("corral", "reconciler", "nodeagent", "builder", "router")


def contracts():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_every_import_contract_is_kept():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(contracts())} kept, 0 broken" in done.stdout


def imported_names(path):
    """Every module name ``path`` imports, as written (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_zeromq_is_imported_in_corral_wire_alone_under_any_name():
    """import-linter sees ``eventlet.green.zmq`` as eventlet: the name is checked here."""
    found = [f"{path.relative_to(ROOT)} imports {name}"
             for package in PACKAGES for path in (ROOT / package).rglob("*.py")
             if not path.is_relative_to(ROOT / "corral" / "wire")
             for name in imported_names(path) if "zmq" in name.split(".")]
    assert found == []


def test_the_shared_core_contract_names_every_module_of_corral_but_the_cli():
    """A new module of corral/ is held to the contract from its first commit."""
    [core] = [c for c in contracts() if c["name"].startswith("corral's shared core")]
    modules = {f"corral.{p.stem if p.is_file() else p.name}" for p in (ROOT / "corral").iterdir()
               if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").exists()}
    assert set(core["source_modules"]) == modules - {"corral.cli"}
