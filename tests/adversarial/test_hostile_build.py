"""A hostile requirement must not own the builder: a real builder daemon, as root, builds an app
whose requirements include a local package with a hostile build backend
(tests/fixtures/hostile_build/hostile_backend.py).

The builder's store DSN is in its ``$CORRAL_STORE`` (with a word no one else knows). Another
app's environment is built first. While the attacker's wheel is built, its backend hunts for the
DSN (its environment, every ``/proc/*/environ`` and ``cmdline``, its parents' first), tries to
write into the other app's finished layer, the builder's caches, archives, logs and store, and
leaves a daemon running. The test asserts that it ran as the attacker's build user with no
groups and no_new_privs, found nothing, changed nothing, left nothing running; that the other
app's layer is byte for byte what it was; and that the attacker's own finished layer is the
builder's and read-only. Then: a build user cannot write through the hard links a derived
environment shares with its base; and a builder that shares its user with builds still gives
them no DSN and no_new_privs.
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

import pytest

from builder.buildusers import MAX_PROCESSES, BuildUsers, build_user_name
from builder.commands import run_logged
from builder.engines import find_uv
from builder.failures import BuildFailed
from builder.layers import _derive, seal
from builder.pipconfig import read_pip_config
from builder.pipeline import Workshop
from builder.prune import _uv_package_sizes, prune_wheels
from builder.worker import Worker
from corral import image_layout
from corral.source import pack_source
from corral.store import open_store
from tests.integration.test_builder_daemon import free_port, healthy, wait_for
from tests.integration.test_builder_pipeline import build
from tests.support import need_root

BACKEND = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hostile_build", "hostile_backend.py")
DAEMON = """
import corral.green
corral.green.patch()
import sys
from builder.daemon import run
from corral.settings import Timings
run(listen=sys.argv[1], cache_dir=sys.argv[2], images_dir=sys.argv[3], name="b1",
    timings=Timings(build_poll=0.1), stale_after=30)
"""


def tree_digest(folder):
    """Every entry of ``folder``: its path, type, mode, owner and content (sha256), as one digest."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, folder)} {st.st_mode:o} {st.st_uid} {st.st_gid}\n".encode())
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
    return h.hexdigest()


def alive(pid):
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.fixture
def area():
    need_root("builds run as build users of their own only when the builder is root (CI runs as root)")
    root = tempfile.mkdtemp(prefix="corral-hostile-", dir="/tmp")
    os.chmod(root, 0o755)   # a build user must pass it, as it passes /var/lib/corral
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemon(area):
    secret = f"dsn-secret-{uuid.uuid4().hex}"
    store_dir = os.path.join(area, secret)
    os.mkdir(store_dir, 0o700)
    dsn = f"sqlite:///{store_dir}/corral.db"
    store = open_store(dsn)
    listen = f"127.0.0.1:{free_port()}"
    dirs = {"cache": os.path.join(area, "cache"), "images": os.path.join(area, "images")}
    proc = subprocess.Popen([sys.executable, "-c", DAEMON, listen, dirs["cache"], dirs["images"]],
                            env=dict(os.environ, CORRAL_STORE=dsn), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: healthy(f"http://{listen}") or proc.poll() is not None, 30, "the builder to answer")
        assert proc.poll() is None, proc.stdout.read().decode()
        yield store, dirs, secret, store_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        store.close()


@pytest.fixture
def in_process(area):
    """``(store, workshop, digest)``: a builder worked in this process with build users, in ``area``,
    and the source of an app that imports six."""
    cache = os.path.join(area, "cache")
    os.makedirs(cache, mode=0o711)
    store = open_store(f"sqlite:///{area}/corral.db")
    workshop = Workshop(name="b1", images_dir=os.path.join(area, "images"), cache_dir=cache, pip_timeout=300,
                        engine="uv", index=read_pip_config(), users=BuildUsers(cache))
    yield store, workshop, put_six_source(area, store, "src")
    store.close()


def put_six_source(area, store, name):
    """The source of an app that imports six, in ``area/name``, stored; its digest."""
    src = os.path.join(area, name)
    os.mkdir(src)
    with open(os.path.join(src, "app.py"), "w") as f:
        f.write("import six\n")
    digest, data = pack_source(src)
    store.put_source(digest, data)
    return digest


def built(store, key, app, digest, requirements):
    store.enqueue_build(key, app, {"source_digest": digest, "requirements": requirements, "python": None})
    def done():   # a succeeded build's layers are recorded once packed
        b = store.get_build(key)
        return b if b and (b.state == "failed" or (b.state == "succeeded" and b.layers)) else None
    return wait_for(done, 240, f"build {key}")


def put_hostile_source(area, store, drop, targets):
    """An app's source whose requirements build the hostile sdist, told ``targets`` (and to report
    into ``drop``, made here: the one folder the test lets it write), stored; its digest."""
    os.mkdir(drop)
    os.chmod(drop, 0o1777)
    src = os.path.join(area, "attacker-src")
    pkg = os.path.join(area, "hostilepkg-0.1")
    os.makedirs(pkg)
    shutil.copy(BACKEND, pkg)
    with open(os.path.join(pkg, "pyproject.toml"), "w") as f:
        f.write('[build-system]\nrequires = []\nbuild-backend = "hostile_backend"\nbackend-path = ["."]\n'
                '[project]\nname = "hostilepkg"\nversion = "0.1"\n')
    with open(os.path.join(pkg, "PKG-INFO"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: hostilepkg\nVersion: 0.1\n")
    with open(os.path.join(pkg, "targets.json"), "w") as f:
        json.dump(dict(targets, drop=drop), f)
    os.makedirs(os.path.join(src, "dist"))
    with tarfile.open(os.path.join(src, "dist", "hostilepkg-0.1.tar.gz"), "w:gz") as tar:
        tar.add(pkg, arcname="hostilepkg-0.1")   # an sdist: building it runs the backend
    with open(os.path.join(src, "requirements.txt"), "w") as f:
        f.write("--find-links ./dist\nsix==1.16.0\nhostilepkg==0.1\n")
    with open(os.path.join(src, "app.py"), "w") as f:
        f.write("import hostilepkg\n")
    digest, data = pack_source(src)
    store.put_source(digest, data)
    return digest


def reports_in(drop):
    """What the hostile backend reported, and the pids of the daemons it left."""
    names = sorted(os.listdir(drop))
    reports = [json.load(open(os.path.join(drop, n))) for n in names if n.startswith("report-")]
    return reports, [int(open(os.path.join(drop, n)).read()) for n in names if n.startswith("lingering-")]


def test_a_hostile_build_backend_finds_no_secret_changes_nothing_and_leaves_nothing_running(area, daemon):
    store, dirs, secret, store_dir = daemon
    victim = built(store, "k-victim", "victim", put_six_source(area, store, "victim-src"), ["six==1.16.0"])
    assert victim.state == "succeeded", victim.error
    victim_env = image_layout.layer_dir(dirs["images"], "env", victim.layers[0]["id"])
    before = tree_digest(victim_env)
    victim_files = [os.path.join(top, n) for top, _, names in os.walk(victim_env) for n in names
                    if n in ("six.py", "python") or n.endswith(".pth")]
    assert any(p.endswith("six.py") for p in victim_files)

    drop = os.path.join(area, "drop")
    cache = dirs["cache"]
    digest = put_hostile_source(area, store, drop, {
        "secret_words": [secret, "CORRAL_STORE="],
        "folders": [os.path.join(dirs["images"], "env"), os.path.join(dirs["images"], "code"), victim_env,
                    os.path.join(victim_env, "lib"), cache, os.path.join(cache, "uv"), os.path.join(cache, "wheels"),
                    os.path.join(cache, "artifacts"), os.path.join(cache, "logs"), os.path.join(cache, "resolutions"),
                    os.path.join(cache, "builds"), os.path.join(cache, "builds", build_user_name("victim"), "uv"),
                    store_dir],
        "files": victim_files + [os.path.join(store_dir, "corral.db")],
    })

    attacker = built(store, "k-attacker", "attacker", digest, "requirements.txt")
    assert attacker.state == "succeeded", attacker.error

    reports, lingering = reports_in(drop)
    assert reports, "the hostile backend never ran"
    me = pwd.getpwnam(build_user_name("attacker"))
    assert lingering, "the hostile backend left no daemon to look for"
    assert not [pid for pid in lingering if alive(pid)], "a process the build left is still running"
    for seen in reports:
        assert (seen["uid"], seen["euid"], seen["gid"], seen["egid"]) == (me.pw_uid,) * 2 + (me.pw_gid,) * 2, seen
        assert seen["groups"] == [], f"supplementary groups: {seen['groups']}"
        assert seen["no_new_privs"] == "1" and int(seen["cap_eff"], 16) == 0, seen
        assert seen["found"] == [], f"the build found the store's DSN: {seen['found']}"
        assert seen["wrote"] == [], f"the build changed what is not its own: {seen['wrote']}"
        assert "CORRAL_STORE" not in seen["env_keys"]
        assert seen["nproc"] == [MAX_PROCESSES, MAX_PROCESSES], f"no process limit: {seen['nproc']}"
        assert seen["home"].startswith(os.path.join(cache, "builds", me.pw_name) + "/"), seen["home"]
    assert tree_digest(victim_env) == before, "the other app's environment layer changed"

    planted = subprocess.run(["find", area, "-path", os.path.join(cache, "builds", me.pw_name), "-prune", "-o",
                              "-user", str(me.pw_uid), "-print"], capture_output=True, text=True)
    assert [p for p in planted.stdout.split() if not p.startswith(drop)] == [], "files of the build user remain"

    own_env = image_layout.layer_dir(dirs["images"], "env", attacker.layers[0]["id"])
    assert os.path.isfile(os.path.join(own_env, "lib", "python3.11", "site-packages", "hostilepkg", "__init__.py"))
    for top, folders, files in os.walk(own_env):
        for name in folders + files:
            st = os.lstat(os.path.join(top, name))
            assert (st.st_uid, st.st_gid) == (0, 0), f"{name} in the finished layer is not the builder's"
            if not stat.S_ISLNK(st.st_mode) and not stat.S_ISDIR(st.st_mode):
                assert not st.st_mode & 0o7222, f"{os.path.join(top, name)} is writable or set-id: {st.st_mode:o}"
    assert victim.layers[0]["id"] != attacker.layers[0]["id"]


def test_a_build_cannot_write_through_the_hard_links_a_derived_environment_shares_with_its_base(area, in_process):
    """A new environment of an app starts as a hard-link copy of its nearest finished one: the copy's
    files are the base's inodes. The build user gets the copy's folders (uv replaces files there)
    but never the files: writing, chmod-ing or truncating any of them fails, and the base stays
    byte for byte what it was. The second build itself succeeds from that base."""
    store, workshop, digest = in_process
    images = workshop.images_dir
    worker = Worker(store, workshop, layers_base="http://127.0.0.1:7072", stale_after=60)
    first = build(store, worker, "k1", digest, ["six==1.16.0"])
    assert first.state == "succeeded", first.error
    base = image_layout.layer_dir(images, "env", first.layers[0]["id"])
    before = tree_digest(base)

    with workshop.users.session("hello", uuid.uuid4().hex) as box:
        dest = os.path.join(images, "env", f".tmp-{uuid.uuid4().hex}")
        _derive(base, dest, log=os.path.join(area, "derive.log"), stopping=lambda: False)
        box.hand_over(dest, tree=True)
        script = ('find "$1" -type f | while read -r f; do '
                  '{ echo x >> "$f"; } 2>/dev/null && echo "WROTE $f"; '
                  'chmod u+w "$f" 2>/dev/null && echo "CHMOD $f"; '
                  ': > "$f" 2>/dev/null && echo "TRUNCATED $f"; done; echo DONE')
        done = run_logged(["sh", "-c", script, "sh", dest], log_path=os.path.join(area, "attack.log"),
                          timeout=120, box=box)
        subprocess.run(["rm", "-rf", "--", dest], check=True)
    assert done.returncode == 0 and "DONE" in done.output, done.output
    assert [line for line in done.output.splitlines() if line.split(" ")[0] in ("WROTE", "CHMOD", "TRUNCATED")] \
        == [], "the build user changed a file of the base environment through its hard link"
    assert tree_digest(base) == before

    second = build(store, worker, "k2", digest, ["six==1.16.0", "idna==3.6"])
    assert second.state == "succeeded", second.error
    marker = image_layout.read_layer_marker(images, "env", second.layers[0]["id"])
    assert marker["derived_from"] == first.layers[0]["id"] and marker["by"] == build_user_name("hello")
    assert tree_digest(base) == before


def test_a_builder_sharing_its_user_still_gives_a_build_no_store_dsn_and_no_new_privileges(area, monkeypatch):
    """Where builds share the builder's user (it is not root, or its folders are not passable), the
    build still gets an environment made afresh: no ``CORRAL_STORE``, nothing of the builder's,
    and ``no_new_privs``. (A process of the same uid can read what that uid can: the builder says so.)"""
    secret = f"dsn-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("CORRAL_STORE", f"postgresql://corral:{secret}@db1/corral")
    monkeypatch.setenv("CORRAL_SECRET_FILE", f"/etc/corral/{secret}")
    cache, images = os.path.join(area, "cache"), os.path.join(area, "images")
    store = open_store(f"sqlite:///{area}/corral.db")
    workshop = Workshop(name="b1", images_dir=images, cache_dir=cache, pip_timeout=300, engine="uv",
                        index=read_pip_config())
    worker = Worker(store, workshop, layers_base="http://127.0.0.1:7072", stale_after=60)
    drop = os.path.join(area, "drop")
    digest = put_hostile_source(area, store, drop, {"secret_words": [secret], "folders": [], "files": []})
    lingering = []
    try:
        done = build(store, worker, "k1", digest, "requirements.txt")
        assert done.state == "succeeded", done.error
        reports, lingering = reports_in(drop)
        assert reports, "the hostile backend never ran"
        for seen in reports:
            assert not [f for f in seen["found"] if f.startswith("env ")], seen["found"]
            assert not {"CORRAL_STORE", "CORRAL_SECRET_FILE"} & set(seen["env_keys"]), seen["env_keys"]
            assert seen["home"].startswith(os.path.join(cache, "work") + "/") and seen["no_new_privs"] == "1", seen
    finally:
        for pid in lingering:   # its own session is gone; a daemon that left it shares the builder's uid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        store.close()


def test_a_layer_holding_a_hard_link_to_a_file_not_the_builds_own_is_refused_and_the_file_untouched(area):
    """Where the kernel lets a user hard-link a file it does not own (``protected_hardlinks`` 0), a
    build could link the builder's secrets into its layer for the seal to make them 0444. Root makes
    such a link here (it may, whatever the setting): the seal refuses the layer and changes nothing."""
    build_uid = pwd.getpwnam("nobody").pw_uid
    secret = os.path.join(area, "secret")
    with open(secret, "w") as f:
        f.write("the builder's")
    os.chmod(secret, 0o600)
    layer = os.path.join(area, "layer")
    os.makedirs(os.path.join(layer, "lib"))
    with open(os.path.join(layer, "lib", "mine.py"), "w") as f:
        f.write("MINE = 1\n")
    subprocess.run(["chown", "-R", f"{build_uid}", layer], check=True)
    os.link(secret, os.path.join(layer, "lib", "stolen.py"))

    with pytest.raises(BuildFailed, match="not its own"):
        seal(layer, build_uid)
    st = os.stat(secret)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0), "the seal changed a file outside the layer"


def test_a_build_users_cache_is_pruned_by_that_user_and_builds_again(area, in_process):
    """Each build user's uv cache counts towards the wheel cache's size and is pruned like the
    builder's, by ``uv cache clean`` run as that user (never root walking a folder it planted):
    the package goes, and the next build of its app fetches it again."""
    store, workshop, digest = in_process
    cache = workshop.cache_dir
    first = build(store, Worker(store, workshop, layers_base="http://b", stale_after=60), "k1", digest,
                  ["six==1.16.0"])
    assert first.state == "succeeded", first.error
    uv_dir = os.path.join(cache, "builds", build_user_name("hello"), "uv")
    assert "six" in _uv_package_sizes(uv_dir)[0]

    removed = prune_wheels(dataclasses.replace(workshop, wheel_cache_bytes=1), find_uv())
    assert f"{build_user_name('hello')}/six" in removed, removed
    assert "six" not in _uv_package_sizes(uv_dir)[0]
    assert os.stat(uv_dir).st_uid == pwd.getpwnam(build_user_name("hello")).pw_uid

    elsewhere = dataclasses.replace(workshop, images_dir=os.path.join(area, "images2"))
    again = build(store, Worker(store, elsewhere, layers_base="http://b", stale_after=60), "k2", digest,
                  ["six==1.16.0"])
    assert (again.state, again.cache) == ("succeeded", "miss"), again.error
    assert "six" in _uv_package_sizes(uv_dir)[0]


def test_a_program_the_build_user_may_not_run_fails_the_build_with_a_sentence(area, in_process):
    _, workshop, _ = in_process
    hidden = os.path.join(area, "hidden")
    os.mkdir(hidden, 0o700)
    tool = os.path.join(hidden, "tool")
    shutil.copy("/bin/true", tool)
    with workshop.users.session("hello", uuid.uuid4().hex) as box:
        with pytest.raises(BuildFailed, match=f"could not run {tool} as build user {box.name}: Permission denied"):
            run_logged([tool], log_path=os.path.join(area, "tool.log"), timeout=30, box=box)
        assert box.running == [0]
