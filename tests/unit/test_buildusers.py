"""Who a build runs as, decided purely: the build user's name, its environment, the uids of a process,
and the ids that keep one app's environment layers from another's."""
import os
import shutil
import tempfile

import pytest

from builder.buildusers import PREFIX, SAFE_PATH, build_environment, build_user_name, choose, uids_of_status
from builder.imageid import env_id
from builder.pipconfig import IndexSettings, pip_environment


@pytest.mark.parametrize("app", ["hello", "a" * 63, "build-1f2e3d4c5b6a7980"], ids=["short", "long", "lookalike"])
def test_a_build_user_is_never_an_apps_run_time_user_and_fits_useradd(app):
    name = build_user_name(app)
    assert name.startswith(PREFIX) and not name.startswith("corral-") and len(name) <= 32
    assert name == build_user_name(app) and name != build_user_name(app + "x")


def test_a_build_environment_holds_nothing_of_the_builders():
    env = build_environment("/s/home", "/s/tmp", {"UV_HTTP_TIMEOUT": "30"})
    assert env == {"PATH": SAFE_PATH, "HOME": "/s/home", "TMPDIR": "/s/tmp", "LANG": "C.UTF-8",
                   "UV_HTTP_TIMEOUT": "30"}


def test_every_uid_of_a_process_counts():
    status = "Name:\tx\nUid:\t0\t992\t0\t992\nGid:\t0\t0\t0\t0\n"
    assert uids_of_status(status) == {0, 992}
    assert uids_of_status("Name:\tx\n") == set()


def test_the_same_pins_built_by_two_build_users_are_two_layers():
    keys = ["six==1.16.0 sha256:abc"]
    assert env_id("3.11.2", "linux", keys, by="corral_build-a") != env_id("3.11.2", "linux", keys, by="corral_build-b")
    assert env_id("3.11.2", "linux", keys) == env_id("3.11.2", "linux", keys, by=None)


def test_pip_in_a_build_reads_the_builders_index_settings_and_no_file():
    env = pip_environment(IndexSettings(index_url="https://i/simple", extra_index_urls=("a", "b"), no_index=False),
                          {"HOME": "/h"})
    assert env["PIP_INDEX_URL"] == "https://i/simple" and env["PIP_EXTRA_INDEX_URL"] == "a b"
    assert env["PIP_CONFIG_FILE"] == "/dev/null" and "PIP_NO_INDEX" not in env and env["HOME"] == "/h"


def test_a_builder_that_is_not_root_shares_its_identity_and_says_why(tmp_path):
    users = choose(str(tmp_path / "cache"), str(tmp_path / "images"), is_root=False)
    assert not users.separate and "not run as root" in users.reason


def test_a_root_builder_whose_installer_others_cannot_run_shares_its_identity_and_says_which():
    root = tempfile.mkdtemp(prefix="corral-choose-", dir="/tmp")
    try:
        os.chmod(root, 0o755)
        hidden = os.path.join(root, "hidden")
        os.makedirs(os.path.join(hidden, "bin"))
        open(os.path.join(hidden, "bin", "uv"), "w").close()
        os.chmod(hidden, 0o700)
        for name in ("cache", "images"):
            os.mkdir(os.path.join(root, name))
        users = choose(os.path.join(root, "cache"), os.path.join(root, "images"),
                       tools=[os.path.join(hidden, "bin", "uv")], is_root=True)
        assert not users.separate and hidden in users.reason and "could not run" in users.reason
        assert choose(os.path.join(root, "cache"), os.path.join(root, "images"), is_root=True).separate
    finally:
        shutil.rmtree(root)
