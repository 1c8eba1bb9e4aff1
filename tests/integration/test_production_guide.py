"""docs/PRODUCTION.md is a test: every command of its ``sh`` blocks is one this machine knows (a program on
the PATH, or of the corral venv; each `corral ...` line parses with corral's own parser, each ``python -c``
compiles), and the blocks marked ``<!-- run -->`` (system users, the key, the router credential, the units of
the four roles, the API token) run as written, as root, in a scratch root: ``/opt/corral/bin/`` is this checkout's venv,
``/etc/corral`` a scratch folder, and `install-units` is given ``--unit-dir`` and ``--env-file`` there (its
defaults are /etc/systemd/system and /etc/corral). What they wrote is then checked: each unit accepted by
`systemd-analyze verify`, the key 0640 group corral, each environment file 0600, the token the API takes."""
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys

import grp
import pwd
import pytest

from corral.auth import api_token
from corral.cli.main import parser
from corral.wire.keys import read_key
from tests.support import need_root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUIDE = os.path.join(ROOT, "docs", "PRODUCTION.md")
BLOCK = re.compile(r"(<!-- run -->\n)?```sh\n(.*?)\n```", re.S)
VENV_BIN = os.path.dirname(sys.executable)
ELSEWHERE = {"apt-get", "systemctl", "journalctl", "pg_ctlcluster", "runuser", "useradd", "id", "install",
             "chgrp", "chmod", "chown", "rm"}   # Debian's own: on every Debian server, if not always on this test machine


def blocks():
    """``[(run, [line, ...])]`` of the guide's sh blocks, in order."""
    with open(GUIDE, encoding="utf-8") as f:
        text = f.read()
    return [(bool(m.group(1)), [line for line in m.group(2).splitlines() if line.strip()])
            for m in BLOCK.finditer(text)]


def simple_commands(line):
    """The argv of each command of ``line`` (split at ``||`` and ``&&``)."""
    return [shlex.split(part) for part in re.split(r"\|\||&&", line)]


def test_the_guide_has_runnable_blocks_and_the_upgrade_order():
    found = blocks()
    assert sum(run for run, _ in found) >= 4
    with open(GUIDE, encoding="utf-8") as f:
        text = f.read()
    order = [text.index(f"**{what}") for what in ("Reconcilers, one at a time", "Builders", "Routers", "Agents, node")]
    assert order == sorted(order)


@pytest.mark.parametrize("line", [line for _, lines in blocks() for line in lines])
def test_every_command_of_the_guide_is_real(line):
    for argv in simple_commands(line):
        if argv[0] == "runuser":
            argv = argv[argv.index("--") + 1:]
        program = os.path.basename(argv[0])
        if argv[0].startswith("/opt/corral/bin/") or argv[0] == "corral":   # an operator's PATH has the venv
            assert os.access(os.path.join(VENV_BIN, program), os.X_OK), f"the venv has no {program}"
        elif program not in ELSEWHERE:
            assert shutil.which(argv[0]), f"{argv[0]} is no program here"
        if program == "corral":
            try:
                parser().parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"corral does not take: {line}")
        if program == "python" and "-c" in argv:
            compile(argv[argv.index("-c") + 1], "<guide>", "exec")


def scratch(line, root):
    """``line`` as it runs in the scratch root ``root`` (see the module docstring)."""
    line = line.replace("/opt/corral/bin/", VENV_BIN + "/").replace("/etc/corral", f"{root}/etc/corral")
    match = re.search(r"install-units --role (\w+)", line)
    if match:
        line += f" --unit-dir {root}/systemd --env-file {root}/etc/corral/{match.group(1)}.env"
    return line


def test_the_install_steps_run_as_written(tmp_path):
    need_root("the install steps make system users and give the key to a group")
    script = "\n".join(scratch(line, tmp_path) for run, lines in blocks() if run for line in lines)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    key = tmp_path / "etc" / "corral" / "secret"
    st = key.stat()
    assert (stat.S_IMODE(st.st_mode), grp.getgrgid(st.st_gid).gr_name) == (0o640, "corral")
    assert api_token(read_key(key)) in done.stdout.split(), "the guide's token is not the API's"
    for role in ("reconciler", "builder", "agent", "router"):
        env = tmp_path / "etc" / "corral" / f"{role}.env"
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        unit = tmp_path / "systemd" / f"corral-{role}.service"
        assert f"EnvironmentFile={env}" in unit.read_text() and stat.S_IMODE(unit.stat().st_mode) == 0o644
        if shutil.which("systemd-analyze"):
            verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
            assert (verified.returncode, verified.stderr.strip()) == (0, ""), verified.stderr
    assert "CORRAL_STORE=postgresql://corral@db1:5432,db2:5432/corral?target_session_attrs=read-write" in \
        (tmp_path / "etc" / "corral" / "reconciler.env").read_text()
    agent_env = (tmp_path / "etc" / "corral" / "agent.env").read_text()   # a node joins: no cluster key on it
    assert "CORRAL_JOIN_TOKEN=cj1." in agent_env and "CORRAL_SECRET_FILE" not in agent_env
    router_env = (tmp_path / "etc" / "corral" / "router.env").read_text()   # nor on a router: its credential
    assert "CORRAL_ROUTER_CREDENTIAL=/etc/corral/router.credential" in router_env
    assert "CORRAL_SECRET_FILE" not in router_env
    credential = (tmp_path / "etc" / "corral" / "router.credential").stat()
    assert (stat.S_IMODE(credential.st_mode), pwd.getpwuid(credential.st_uid).pw_name) == (0o600, "corral")
