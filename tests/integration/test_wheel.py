"""A non-editable install works: the wheel carries every package and the schemas."""
import os
import pathlib
import subprocess
import sys
import zipfile

from tests.e2e.installed import build_wheel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wheel_ships_packages_and_schemas_and_runs_outside_the_checkout(tmp_path):
    wheel = pathlib.Path(build_wheel(ROOT, str(tmp_path / "dist")))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("schemas/app.schema.json", "schemas/wire/report.schema.json",
                     "schemas/wire/assign.schema.json", "corral/cli/main.py", "reconciler/planner.py",
                     "nodeagent/agent.py", "builder/worker.py"):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not [n for n in names if n.startswith("tests/")]

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import corral, schemas, sys; "
             "assert corral.__file__.startswith(sys.argv[1]), corral.__file__; "
             "assert schemas.load('app')['$schema']; schemas.load('wire/report'); schemas.load('wire/assign'); "
             "from corral.spec import load_paths; "
             "docs = load_paths([sys.argv[2]]); print(docs[0].name)")
    r = subprocess.run([sys.executable, "-c", probe, str(target), os.path.join(ROOT, "manifests/examples/hello.yaml")],
                       cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(target)),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "hello"
