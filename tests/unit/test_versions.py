"""Which versions work together (one minor release of skew), and what `corral version` shows."""
import pytest

import corral
from corral import versions
from corral.cli import version
from corral.store.schema import SCHEMA_VERSION


@pytest.mark.parametrize("mine,theirs,ok", [
    ("0.2.0", "0.2.0", True),
    ("0.2.0", "0.1.3", True),
    ("0.2.0.dev0", "0.3.1", True),
    ("0.3.0", "0.1.0", False),
    ("1.0.0", "0.9.0", False),
    ("0.2.0", "garbage", False),
    ("0.2.0", None, False),
], ids=["same", "one-older", "one-newer", "two-apart", "majors-differ", "unparsable", "none"])
def test_skew(mine, theirs, ok):
    assert versions.skew(mine, theirs) is ok


def test_the_package_version_is_a_release_number():
    assert versions.release(corral.__version__) is not None


def test_the_table_names_each_daemon_and_what_is_wrong():
    rows = version.judge([
        {"role": "client", "name": "corral", **versions.local(SCHEMA_VERSION)},
        version.reconciler_row("http://10.0.0.1:7070", {"name": "r1", "version": corral.__version__, "bus": 1,
                                                        "schema": 4, "store_schema": 5, "leader": True}),
        dict(version.reconciler_row("http://10.0.0.2:7070", None), error="unreachable: connection refused"),
        *version.agent_rows([{"name": "node-1", "version": "0.0.1"}, {"name": "node-2", "version": None}]),
        version.builder_row("http://10.0.0.3:7072", {"version": corral.__version__, "schema": 4}),
    ], mine="0.2.0")
    lines = version.table(rows).splitlines()
    assert lines[0].split() == ["ROLE", "NAME", "VERSION", "BUS", "SCHEMA", "NOTE"]
    by_name = {line.split()[1]: line for line in lines[1:]}
    assert "leader; store schema 5" in by_name["r1"]
    assert "unreachable: connection refused" in by_name["http://10.0.0.2:7070"]
    assert "outside the supported skew" in by_name["node-1"]
    assert "has not reported" in by_name["node-2"]
    assert by_name["http://10.0.0.3:7072"].split()[2] == corral.__version__


@pytest.mark.parametrize("version,since,older", [
    ("0.1.0", "0.2", True), ("0.2.0.dev0", "0.2", False), ("0.3.1", "0.2", False), (None, "0.2", False),
    ("garbage", "0.2", False),
])
def test_older_than(version, since, older):
    assert versions.older_than(version, since) is older


def test_the_client_config_carries_the_builders_and_the_environment_overrides_them(tmp_path):
    from corral.cli.client import load_full_config, write_config
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    write_config(["http://r1:7070"], "tok", environ=env, builders=["http://b1:7072"])
    assert load_full_config(env) == (["http://r1:7070"], "tok", ["http://b1:7072"])
    assert load_full_config(dict(env, CORRAL_BUILDERS="http://b2:7072, http://b3:7072"))[2] == \
        ["http://b2:7072", "http://b3:7072"]
    write_config(["http://r1:7070"], "tok", environ=env)
    assert load_full_config(env)[2] == []
