"""Who an app runs as (nodeagent.users): user names, the on/off decision, reachability."""
import os
import stat

import pytest

from nodeagent import users
from nodeagent.users import Identity

D755, D700, D711 = stat.S_IFDIR | 0o755, stat.S_IFDIR | 0o700, stat.S_IFDIR | 0o711


@pytest.mark.parametrize("app, name", [
    ("hello", "corral-hello"),
    ("1st-app", "corral-1st-app"),
    ("a" * 25, "corral-" + "a" * 25),                  # 32 characters: the limit, kept as it is
], ids=["short", "digit-first", "exactly-32"])
def test_a_short_app_name_gives_corral_app(app, name):
    assert users.user_name(app) == name


def test_a_long_app_name_gives_a_stable_short_name_within_the_limit():
    long = "a-very-long-application-name-that-goes-on-and-on-for-63-chars-x"
    name = users.user_name(long)
    assert len(name) <= users.MAX_NAME and name.startswith("corral-a-very-l_")
    assert name == users.user_name(long), "stable"
    assert name != users.user_name(long[:-1] + "y"), "two long names sharing their start still differ"


@pytest.mark.parametrize("app", ["Hello_World", "x" * 26, "ünïcode"])
def test_any_app_string_gives_a_valid_user_name(app):
    name = users.user_name(app)
    assert len(name) <= users.MAX_NAME and users._VALID.match(name)


@pytest.mark.parametrize("wanted, is_root, blocked, on, why", [
    (None, True, None, True, None),
    (True, True, None, True, None),
    (False, True, None, False, "--no-app-users"),
    (None, False, None, False, "does not run as root"),
    (True, False, None, False, "does not run as root"),
    (None, True, "/root", False, "/root cannot be passed by other users"),
], ids=["root-default", "root-asked", "turned-off", "not-root", "asked-not-root", "blocked-folder"])
def test_decide(wanted, is_root, blocked, on, why):
    got_on, reason = users.decide(wanted, is_root, blocked)
    assert got_on == on
    assert (reason is None) if why is None else (why in reason)


@pytest.mark.parametrize("entries, uid, gid, need, expected", [
    ([("/", D755, 0, 0), ("/srv", D755, 0, 0), ("/srv/x", stat.S_IFREG | 0o755, 0, 0)], 999, 999, "x", None),
    ([("/", D755, 0, 0), ("/root", D700, 0, 0), ("/root/py", stat.S_IFREG | 0o755, 0, 0)], 999, 999, "x", "/root"),
    ([("/", D755, 0, 0), ("/srv", D711, 0, 0)], 999, 999, "x", None),   # search without read is enough
    ([("/", D755, 0, 0), ("/home/u", D700, 999, 999)], 999, 999, "x", None),  # its own folder
    ([("/", D755, 0, 0), ("/g", stat.S_IFDIR | 0o750, 0, 999)], 999, 999, "x", None),  # its group's
    ([("/", D755, 0, 0), ("/g", stat.S_IFDIR | 0o750, 0, 999)], None, None, "x", "/g"),  # anyone else
    ([("/", D755, 0, 0), ("/f", stat.S_IFREG | 0o640, 0, 0)], 999, 999, "r", "/f"),
], ids=["open", "root-home", "search-only", "owner", "group", "others", "unreadable-file"])
def test_denied(entries, uid, gid, need, expected):
    assert users.denied(entries, uid, gid, need) == expected


def test_path_entries_walk_from_the_root_to_the_real_path(tmp_path):
    target = tmp_path / "a" / "b"
    target.mkdir(parents=True)
    (tmp_path / "link").symlink_to(target)
    paths = [p for p, *_ in users.path_entries(str(tmp_path / "link"))]
    assert paths[0] == "/" and paths[-1] == os.path.realpath(target)
    assert paths == sorted(paths, key=len)


def test_the_identity_env_tells_the_app_who_it_is():
    assert Identity(999, 998, "corral-hello", "/var/lib/corral/home/corral-hello").env() == {
        "USER": "corral-hello", "LOGNAME": "corral-hello", "HOME": "/var/lib/corral/home/corral-hello"}


def test_a_uid_without_a_passwd_name_is_named_by_its_number(tmp_path):
    uid = next(u for u in range(54321, 64000) if not _has_name(u))
    found = users.own_identity(uid, uid, None, str(tmp_path / "home"))
    assert found == Identity(uid, uid, str(uid), str(tmp_path / "home"))


def test_the_agents_own_user_keeps_its_home(tmp_path):
    own = users.OwnUser(str(tmp_path), "/home/agent").identity("hello")
    assert (own.uid, own.gid, own.home) == (os.getuid(), os.getgid(), "/home/agent")
    assert not users.OwnUser.separate and users.AppUsers.separate


def _has_name(uid):
    import pwd
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


class FakeRun:
    """Records useradd calls and fails like useradd would (the passwd side is faked by ``_lookup``)."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        return type("Done", (), {"returncode": 9, "stderr": b"useradd: user 'x' already exists\n"})()


def test_a_user_that_cannot_be_created_fails_with_one_sentence(tmp_path, monkeypatch):
    run = FakeRun()
    app_users = users.AppUsers(str(tmp_path), run=run)
    monkeypatch.setattr(app_users, "_lookup", lambda name: None)
    with pytest.raises(users.UserError, match=r"user corral-hello for app hello could not be created \(useradd: "):
        app_users.identity("hello")
    assert run.calls[0][:2] == ["useradd", "--system"] and run.calls[0][-1] == "corral-hello"


def test_a_user_with_uid_0_is_refused(tmp_path, monkeypatch):
    app_users = users.AppUsers(str(tmp_path), run=FakeRun())
    entry = type("Entry", (), {"pw_uid": 0, "pw_gid": 0, "pw_name": "corral-hello"})()
    monkeypatch.setattr(app_users, "_lookup", lambda name: entry)
    with pytest.raises(users.UserError, match="never runs as root"):
        app_users.identity("hello")

