"""Instance environment and command expansion."""
import pytest

from nodeagent.environ import CommandError, base_env, expand_command, expand_word, instance_env


def test_base_env_keeps_only_path_locale_home_tz():
    parent = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
              "SECRET": "x", "PYTHONPATH": "/evil", "VIRTUAL_ENV": "/other"}
    assert base_env(parent) == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC"}


def make_env(**kw):
    args = dict(venv="/img/venv", spec_env={"GREETING": "hi"}, port=4000, app="hello", process="web",
                instance="hello-web-1", node="n1")
    args.update(kw)
    return instance_env({"PATH": "/usr/bin:/bin", "HOME": "/root"}, **args)


def test_instance_env_has_corral_names_port_and_venv_first_on_path():
    env = make_env()
    assert env == {
        "PATH": "/img/venv/bin:/usr/bin:/bin", "HOME": "/root", "GREETING": "hi", "PORT": "4000",
        "CORRAL_APP": "hello", "CORRAL_PROCESS": "web", "CORRAL_INSTANCE": "hello-web-1",
        "CORRAL_NODE": "n1", "VIRTUAL_ENV": "/img/venv",
    }


def test_instance_env_without_port_has_no_port():
    assert "PORT" not in make_env(port=None)


def test_spec_env_cannot_override_what_corral_sets():
    env = make_env(spec_env={"PORT": "1", "CORRAL_NODE": "fake", "PATH": "/opt/bin"})
    assert (env["PORT"], env["CORRAL_NODE"], env["PATH"]) == ("4000", "n1", "/img/venv/bin:/opt/bin")


@pytest.mark.parametrize("word, expected", [
    pytest.param("$PORT", "4000", id="plain"),
    pytest.param("${PORT}", "4000", id="braced"),
    pytest.param("127.0.0.1:$PORT", "127.0.0.1:4000", id="inside-a-word"),
    pytest.param("${PORT}0", "40000", id="braced-followed-by-digits"),
    pytest.param("$PORTX", "", id="longest-name-wins"),
    pytest.param("a$UNSET-b", "a-b", id="unset-is-empty"),
    pytest.param("$$PORT", "$PORT", id="double-dollar-is-literal"),
    pytest.param("cost $5", "cost $5", id="dollar-before-non-name-stays"),
    pytest.param("end$", "end$", id="trailing-dollar-stays"),
    pytest.param("no vars", "no vars", id="untouched"),
])
def test_expand_word(word, expected):
    assert expand_word(word, {"PORT": "4000"}) == expected


@pytest.mark.parametrize("word", ["${PORT", "${}", "${1X}"])
def test_bad_braces_are_an_error(word):
    with pytest.raises(CommandError, match="closing"):
        expand_word(word, {"PORT": "1"})


def test_expand_command_keeps_words_unsplit():
    assert expand_command(["echo", "$MSG"], {"MSG": "a b"}) == ["echo", "a b"]


def test_empty_command_is_an_error():
    with pytest.raises(CommandError):
        expand_command([], {})
