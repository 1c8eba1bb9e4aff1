"""uv's phases read from its own output, and a command's lines handed on while it runs."""
import sys

import pytest

from builder.commands import run_logged
from builder.engines import uv_phase, uv_progress


@pytest.mark.parametrize("line, resolved, phase", [
    ("Resolved 42 packages in 1.21s", 0, "fetch (42 packages resolved)"),
    ("Prepared 42 packages in 2.03s", 42, "install (fetched 42/42)"),
    ("Prepared 1 package in 80ms", 43, "install (fetched 1/43)"),
    ("Installed 43 packages in 95ms", 43, "compile bytecode (43 installed)"),
    ("Bytecode compiled 5123 files in 2.10s", 43, None),
    (" + django==4.2.16", 43, None),
    ("error: No solution found when resolving dependencies:", 0, None),
], ids=["resolved", "prepared-all", "prepared-one", "installed", "compiled", "package-line", "error"])
def test_uv_phase_of_a_line(line, resolved, phase):
    assert uv_phase(line, resolved) == phase


def test_uv_progress_counts_fetches_against_the_resolved_set():
    seen = []
    on_line = uv_progress(seen.append)
    for line in ["Resolved 43 packages in 1s", "Prepared 1 package in 1s", "Installed 1 package in 1ms"]:
        on_line(line)
    assert seen == ["fetch (43 packages resolved)", "install (fetched 1/43)", "compile bytecode (1 installed)"]


def test_a_commands_lines_are_handed_on_in_order_the_last_without_a_newline_too(tmp_path):
    lines = []
    code = "import sys, time\nprint('one', flush=True)\ntime.sleep(0.5)\nsys.stdout.write('two\\nthree')\n"
    done = run_logged([sys.executable, "-c", code], log_path=str(tmp_path / "b.log"), timeout=60,
                      on_line=lines.append)
    assert done.returncode == 0 and lines == ["one", "two", "three"]
    assert done.output == "one\ntwo\nthree"


def test_one_resolved_package_is_one_package():
    assert uv_phase("Resolved 1 package in 3ms", 0) == "fetch (1 package resolved)"
