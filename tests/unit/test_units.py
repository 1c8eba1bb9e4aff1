"""The systemd units `corral install-units` writes: what each role's unit holds (a table), what never goes on
its command line, and that systemd itself accepts each one (`systemd-analyze verify` where it is installed,
else a parse that knows every key we write)."""
import configparser
import os
import shutil
import subprocess
import sys

import pytest

from corral import units

EXE = os.path.join(os.path.dirname(sys.executable), "corral")
DSN = "postgresql://corral:s3cret@db1:5432/corral"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes"}


def options(role, **kw):
    feeds = {"agent": ("tcp://10.0.0.1:7071", "tcp://10.0.0.2:7071"), "router": ("tcp://10.0.0.1:7073",)}
    return units.Options(role=role, exe=EXE, name="host-1", store=DSN if role in ("reconciler", "builder") else None,
                         reconcilers=feeds.get(role, ()), **kw)


def service(text):
    """The [Service] section of a unit as a dict (the last value of a key wins)."""
    p = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    p.optionxform = str
    p.read_string(text)
    return dict(p["Service"])


@pytest.mark.parametrize("role,user,kill_mode,hardened,folders", [
    ("reconciler", "corral", None, True, {"StateDirectory": "corral/reconciler", "StateDirectoryMode": "0700"}),
    ("builder", "root", None, True, {"StateDirectory": "corral/images", "CacheDirectory": "corral/builder",
                                     "ReadWritePaths": "/etc"}),
    ("agent", "root", "process", False, {"StateDirectory": "corral/node corral/images"}),
    ("router", "corral", None, True, {"StateDirectory": None, "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
                                      "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE"}),
])
def test_each_roles_unit(role, user, kill_mode, hardened, folders):
    s = service(units.unit(options(role)))
    assert (s["User"], s.get("KillMode"), s["Restart"]) == (user, kill_mode, "on-failure")
    assert s["EnvironmentFile"] == f"/etc/corral/{role}.env"
    assert s["ExecStart"].split()[:2] == [EXE, role]
    assert all(s.get(k) == v for k, v in HARDENING.items()) is hardened
    assert {k: s.get(k) for k in folders} == folders


@pytest.mark.parametrize("role", units.ROLES)
def test_the_key_and_the_store_stay_off_the_command_line(role):
    s = service(units.unit(options(role)))
    for secret in ("secret", "s3cret", "postgresql", "CORRAL_"):
        assert secret not in s["ExecStart"], f"{secret} on {role}'s command line"
    env = units.env_file(options(role))
    assert (f"CORRAL_STORE={DSN}" in env) is (role in ("reconciler", "builder"))
    assert ("CORRAL_SECRET_FILE=/etc/corral/secret" in env) is (role in ("reconciler", "agent"))
    assert ("CORRAL_ROUTER_CREDENTIAL=/etc/corral/router.credential" in env) is (role == "router")


def test_the_routers_credential_is_where_the_router_looks_for_it():
    from corral.wire import routercred
    assert (units.ENV_ROUTER, units.ROUTER_CREDENTIAL) == (routercred.ENV_VAR, routercred.DEFAULT_PATH)


def test_a_builder_run_as_another_user_gets_no_write_access_to_etc():
    s = service(units.unit(options("builder", user="corral_builder")))
    assert s["User"] == "corral_builder" and "/etc" not in s.get("ReadWritePaths", "")


def test_an_agent_given_a_join_token_has_it_in_its_environment_file_instead_of_the_key():
    token = "cj1." + "a" * 16 + "." + "b" * 32 + "." + "c" * 64
    o = options("agent", join_token=token)
    assert token not in units.unit(o)
    env = units.env_file(o)
    assert f"CORRAL_JOIN_TOKEN={token}\n" in env and "CORRAL_SECRET_FILE" not in env


@pytest.mark.parametrize("role,token", [("agent", "cj1.ab\nCORRAL_STORE=x"), ("agent", "a token"),
                                        ("reconciler", "cj1." + "a" * 16)],
                         ids=["a line of its own in the env file", "not a token", "not an agent"])
def test_a_join_token_that_is_not_one_or_not_for_an_agent_is_refused_in_one_sentence(role, token):
    with pytest.raises(ValueError, match=r"^--join takes a join token \(cj1\. and hex, as `corral node join-token` "
                                         r"prints it\), for an agent's unit only$"):
        options(role, join_token=token)


def test_only_the_router_may_bind_low_ports_and_it_listens_on_80_unless_told():
    for role in units.ROLES:
        s = service(units.unit(options(role)))
        assert ("AmbientCapabilities" in s) is (role == "router")
    s = service(units.unit(options("router")))
    assert s["ExecStart"].split()[2:6] == ["--listen", "0.0.0.0:80", "--health", "127.0.0.1:8081"]
    assert "--listen 10.0.0.9:443" in service(units.unit(options("router", listen="10.0.0.9:443")))["ExecStart"]


def test_an_agent_without_reconcilers_and_an_unplain_word_are_refused_in_one_sentence():
    with pytest.raises(ValueError, match="needs the reconcilers' buses"):
        units.Options(role="agent", exe=EXE, name="n")
    with pytest.raises(ValueError, match="cannot go on a unit's command line"):
        units.unit(options("reconciler", settings="/etc/corral/my settings.yaml"))
    with pytest.raises(ValueError, match="needs the reconcilers' route feeds"):
        units.Options(role="router", exe=EXE, name="n")
    with pytest.raises(ValueError, match="not one of reconciler, agent, builder, router"):
        units.Options(role="web", exe=EXE, name="n")


def test_a_folder_outside_var_is_named_writable_and_made_by_nobody():
    s = service(units.unit(options("reconciler", data_dir="/srv/corral")))
    assert s["ReadWritePaths"] == "/srv/corral" and "StateDirectory" not in s


@pytest.mark.parametrize("role", units.ROLES)
def test_systemd_accepts_the_unit(role, tmp_path):
    path = tmp_path / units.unit_name(role)
    path.write_text(units.unit(options(role)))
    if not shutil.which("systemd-analyze"):   # a parse, and every key is one systemd knows
        known = {"Type", "User", "Group", "EnvironmentFile", "Environment", "ExecStart", "Restart", "RestartSec",
                 "TimeoutStopSec", "KillMode", "KillSignal", "TasksMax", "LimitNOFILE", "StateDirectory",
                 "StateDirectoryMode", "CacheDirectory", "CacheDirectoryMode", "ReadWritePaths", "PrivateDevices",
                 "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID",
                 "LockPersonality", "AmbientCapabilities", "CapabilityBoundingSet", *HARDENING}
        assert set(service(path.read_text())) <= known
        return
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (0, ""), done.stderr


def test_no_daemon_user_is_one_an_app_could_be_given():
    from nodeagent.users import user_name
    for role, user in units.USERS.items():
        if user != "root":
            assert not user.startswith("corral-"), f"{role}'s user {user} is in the app users' namespace"
            assert user not in {user_name(app) for app in (role, user, user.removeprefix("corral"))}


def test_the_environment_names_are_those_the_daemons_read():
    from corral.wire import keys
    assert (units.ENV_SECRET, units.ENV_STORE) == (keys.ENV_VAR, keys.STORE_ENV_VAR)
