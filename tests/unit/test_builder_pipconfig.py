"""The operator's pip settings, read from `pip config list` and given to uv alike."""
from builder.pipconfig import IndexSettings, parse_pip_config, uv_environment, uv_index_args

THIS_MACHINE = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
"""


def test_this_machines_config_is_read_whole():
    assert parse_pip_config(THIS_MACHINE) == IndexSettings(
        extra_index_urls=("file:///opt/pypi/simple", "file:///opt/pypi-more/simple"),
        find_links=("/opt/wheels",), constraints=("/etc/xdg/pip/constraints.txt",),
        cert="/etc/ssl/certs/ca-certificates.crt", timeout="180")


def test_the_environment_beats_install_beats_global():
    text = "global.index-url='https://g'\n:env:.index-url='https://e'\ninstall.index-url='https://i'\n"
    assert parse_pip_config(text).index_url == "https://e"
    assert parse_pip_config("global.index-url='https://g'\ninstall.index-url='https://i'\n").index_url == "https://i"


def test_uv_gets_every_index_with_pips_best_match_and_constraints_only_to_resolve():
    settings = parse_pip_config(THIS_MACHINE + "global.index-url='https://mirror/simple'\n")
    resolve = uv_index_args(settings, resolving=True)
    assert resolve == ["--index-url", "https://mirror/simple",
                       "--extra-index-url", "file:///opt/pypi/simple",
                       "--extra-index-url", "file:///opt/pypi-more/simple",
                       "--index-strategy", "unsafe-best-match",
                       "--find-links", "/opt/wheels",
                       "--constraint", "/etc/xdg/pip/constraints.txt"]
    assert "--constraint" not in uv_index_args(settings, resolving=False)


def test_no_config_means_no_options_and_an_unchanged_environment():
    assert uv_index_args(parse_pip_config(""), resolving=True) == []
    assert uv_environment(IndexSettings(), {"A": "1"}) == {"A": "1"}


def test_cert_and_timeout_reach_uvs_environment():
    env = uv_environment(parse_pip_config(THIS_MACHINE), {})
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}


def test_no_index_is_passed_on():
    assert uv_index_args(parse_pip_config("global.no-index='true'\n"), resolving=False) == ["--no-index"]
