"""Fetching images: each missing layer downloaded over real HTTP, verified, unpacked safely, renamed into place."""
import corral.green

corral.green.patch()

import hashlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402

from corral import image_layout as layout  # noqa: E402
from nodeagent.pull import ImageCache, ImageError, ensure_image  # noqa: E402
from tests.support import serve_bytes, tar_bytes as archive  # noqa: E402

IMAGE = "sha256:" + "2" * 64
ENV_ID, CODE_ID = "sha256:" + "e" * 64, "sha256:" + "c" * 64


ENV = archive([("bin", "dir", None), ("bin/python", "symlink", sys.executable)])
CODE = archive([("main.py", "file", "print('hi')\n")])
CODE2 = archive([("main.py", "file", "print('v2')\n")])


@pytest.fixture
def serve():
    """serve({name: data}) -> (base url, hits): an HTTP server answering GET /<name> with its data."""
    servers, hits = [], []

    def start(files):
        servers.append(serve_bytes(files, hits))
        return servers[-1].url, hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def artifact(base, env=ENV, code=CODE, env_id=ENV_ID, code_id=CODE_ID, env_sha=None, code_sha=None, code_name="code"):
    return {"layers": [
        {"kind": "env", "id": env_id, "url": f"{base}/env", "sha256": env_sha or sha(env), "size": len(env)},
        {"kind": "code", "id": code_id, "url": f"{base}/{code_name}", "sha256": code_sha or sha(code)}]}


def test_an_image_is_its_two_layers_fetched_verified_marked_and_linked(tmp_path, serve):
    base, hits = serve({"env": ENV, "code": CODE})
    path = ensure_image(str(tmp_path), IMAGE, artifact(base))
    assert path == layout.image_dir(str(tmp_path), IMAGE)
    assert open(os.path.join(layout.code_dir(str(tmp_path), IMAGE), "main.py")).read() == "print('hi')\n"
    assert os.readlink(os.path.join(layout.venv_dir(str(tmp_path), IMAGE), "bin", "python")) == sys.executable
    assert os.path.realpath(layout.venv_dir(str(tmp_path), IMAGE)) == layout.layer_dir(str(tmp_path), "env", ENV_ID)
    assert layout.read_layer_marker(str(tmp_path), "code", CODE_ID)["artifact_sha256"] == sha(CODE)
    assert layout.read_marker(str(tmp_path), IMAGE)["image"] == IMAGE
    assert sorted(os.listdir(tmp_path)) == ["2" * 64, "code", "env"]
    assert sorted(hits) == ["/code", "/env"]


def test_a_finished_image_is_no_work(tmp_path, serve):
    base, hits = serve({"env": ENV, "code": CODE})
    ensure_image(str(tmp_path), IMAGE, artifact(base))
    ensure_image(str(tmp_path), IMAGE, artifact(base))
    assert len(hits) == 2


def test_a_new_image_with_a_known_environment_fetches_only_its_code(tmp_path, serve):
    base, hits = serve({"env": ENV, "code": CODE, "code2": CODE2})
    ensure_image(str(tmp_path), IMAGE, artifact(base))
    other = "sha256:" + "3" * 64
    ensure_image(str(tmp_path), other, artifact(base, code=CODE2, code_id="sha256:" + "d" * 64, code_name="code2"))
    assert sorted(hits) == ["/code", "/code2", "/env"]
    assert os.path.realpath(layout.venv_dir(str(tmp_path), other)) == os.path.realpath(layout.venv_dir(str(tmp_path), IMAGE))


def test_a_digest_mismatch_names_both_digests_and_leaves_no_image(tmp_path, serve):
    base, _ = serve({"env": ENV, "code": CODE})
    with pytest.raises(ImageError, match=f"has sha256 {sha(CODE)}, expected {'0' * 64}"):
        ensure_image(str(tmp_path), IMAGE, artifact(base, code_sha="0" * 64))
    assert not os.path.exists(layout.image_dir(str(tmp_path), IMAGE))
    assert os.listdir(tmp_path / "code") == []


@pytest.mark.parametrize("member", [
    pytest.param(("../evil", "file", "x"), id="dot-dot"),
    pytest.param(("/etc/evil", "file", "x"), id="absolute"),
    pytest.param(("app/deeper/../../../evil", "file", "x"), id="dot-dot-deep"),
])
def test_a_member_escaping_the_layer_is_refused(tmp_path, serve, member):
    bad = archive([("app", "dir", None), member])
    base, _ = serve({"env": ENV, "code": bad})
    images_dir = tmp_path / "images"
    with pytest.raises(ImageError, match="outside the layer folder"):
        ensure_image(str(images_dir), IMAGE, artifact(base, code=bad))
    assert os.listdir(images_dir / "code") == []
    assert not (tmp_path / "evil").exists()


def test_a_file_written_through_a_symlink_out_of_the_layer_is_refused(tmp_path, serve):
    outside = tmp_path / "outside"
    outside.mkdir()
    bad = archive([("app", "dir", None), ("app/link", "symlink", str(outside)), ("app/link/evil", "file", "x")])
    base, _ = serve({"env": ENV, "code": bad})
    images_dir = tmp_path / "images"
    with pytest.raises(ImageError):
        ensure_image(str(images_dir), IMAGE, artifact(base, code=bad))
    assert os.listdir(outside) == [] and os.listdir(images_dir / "code") == []


def test_a_bad_image_id_is_one_sentence(tmp_path):
    with pytest.raises(ImageError, match="sha256:<64 hex digits>"):
        ensure_image(str(tmp_path), "latest", artifact("http://127.0.0.1:9"))


def test_an_artifact_without_both_layers_is_one_sentence(tmp_path):
    with pytest.raises(ImageError, match="does not name both its env and code layers"):
        ensure_image(str(tmp_path), IMAGE, {"layers": artifact("http://127.0.0.1:9")["layers"][:1]})


def test_two_agents_sharing_the_images_dir_end_with_one_finished_image(tmp_path, serve):
    base, _ = serve({"env": ENV, "code": CODE})
    first, second = ImageCache(str(tmp_path)), ImageCache(str(tmp_path))
    pool = eventlet.GreenPool()
    paths = list(pool.imap(lambda cache: cache.ensure(IMAGE, artifact(base)), [first, second, first, second]))
    assert len(set(paths)) == 1
    assert sorted(os.listdir(tmp_path / "env")) == ["e" * 64, "e" * 64 + ".json"]
    assert open(os.path.join(layout.code_dir(str(tmp_path), IMAGE), "main.py")).read() == "print('hi')\n"


def test_the_cache_fetches_one_image_once_for_many_callers(tmp_path, serve):
    base, hits = serve({"env": ENV, "code": CODE})
    cache = ImageCache(str(tmp_path))
    pool = eventlet.GreenPool()
    paths = list(pool.imap(lambda _: cache.ensure(IMAGE, artifact(base)), range(5)))
    assert len(set(paths)) == 1 and len(hits) == 2


def test_a_hidden_file_and_a_link_inside_the_layer_are_fine(tmp_path, serve):
    env = archive([(".", "dir", None), ("./bin", "dir", None), ("./bin/python", "symlink", sys.executable),
                   ("./bin/python3", "symlink", "python"), ("./.hidden", "file", "x")])
    base, _ = serve({"env": env, "code": CODE})
    ensure_image(str(tmp_path), IMAGE, artifact(base, env=env))
    layer = layout.layer_dir(str(tmp_path), "env", ENV_ID)
    assert os.readlink(os.path.join(layer, "bin", "python3")) == "python"
    assert open(os.path.join(layer, ".hidden")).read() == "x"


LONG = "pkg/" + "d" * 120 + "/module.py"   # over ustar's 100 characters: a GNU long name or a pax record


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT],
                         ids=["gnu", "pax", "ustar"])
def test_long_names_and_links_arrive_whole_in_every_tar_format(tmp_path, serve, fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        name = LONG if fmt != tarfile.USTAR_FORMAT else "pkg/" + "d" * 90 + "/m.py"   # split into prefix and name
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"x=1"))
        link = tarfile.TarInfo("pkg/link")
        link.type, link.linkname = tarfile.SYMTYPE, name.split("/", 1)[1]
        tar.addfile(link)
    data = buf.getvalue()
    base, _ = serve({"env": ENV, "code": data})
    ensure_image(str(tmp_path), IMAGE, artifact(base, code=data))
    assert open(os.path.join(layout.layer_dir(str(tmp_path), "code", CODE_ID), "pkg", "link")).read() == "x=1"


def test_a_real_tar_of_a_folder_unpacks_to_the_same_files(tmp_path, serve):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / ("x" * 150)).write_text("long")
    (src / "bin" / "tool").write_bytes(os.urandom(70000))
    os.chmod(src / "bin" / "tool", 0o755)
    os.symlink("tool", src / "bin" / "alias")
    os.link(src / "bin" / "tool", src / "hard")
    data = subprocess.run(["tar", "--create", "--file=-", "--sort=name", "--directory", str(src), "."],
                          check=True, capture_output=True).stdout
    base, _ = serve({"env": data, "code": CODE})
    ensure_image(str(tmp_path / "images"), IMAGE, artifact(base, env=data))
    layer = layout.layer_dir(str(tmp_path / "images"), "env", ENV_ID)
    assert open(os.path.join(layer, "x" * 150)).read() == "long"
    assert open(os.path.join(layer, "hard"), "rb").read() == (src / "bin" / "tool").read_bytes()
    assert os.readlink(os.path.join(layer, "bin", "alias")) == "tool" and os.access(os.path.join(layer, "bin", "tool"), os.X_OK)


def test_a_truncated_archive_with_its_own_digest_is_one_sentence_and_leaves_nothing(tmp_path, serve):
    cut = archive([("main.py", "file", "x" * 2000)])[:1024]
    base, _ = serve({"env": ENV, "code": cut})
    with pytest.raises(ImageError, match="ends inside the member .main.py."):
        ensure_image(str(tmp_path), IMAGE, artifact(base, code=cut))
    assert os.listdir(tmp_path / "code") == []


def test_unpacked_files_are_the_agents_writable_by_it_alone_and_keep_their_mtime(tmp_path, serve):
    """Whatever owners and modes the archive names: the agent's own files (root's in production), 0755
    folders, 0755 programs and 0644 the rest, each file's mtime as archived (bytecode is checked against it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, mode in (("bin", tarfile.DIRTYPE, 0o777), ("bin/tool", tarfile.REGTYPE, 0o777),
                                 ("secret.py", tarfile.REGTYPE, 0o600), ("private", tarfile.DIRTYPE, 0o700),
                                 ("private/x.py", tarfile.REGTYPE, 0o664)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, 1234, 1234, 1_600_000_000
            data = b"x = 1\n" if kind == tarfile.REGTYPE else None
            if data:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    data = buf.getvalue()
    base, _ = serve({"env": ENV, "code": data})
    ensure_image(str(tmp_path), IMAGE, artifact(base, code=data))
    layer = layout.layer_dir(str(tmp_path), "code", CODE_ID)
    seen = {}
    for folder, dirs, files in os.walk(layer):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            seen[os.path.relpath(os.path.join(folder, name), layer)] = (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777))
            assert st.st_mtime == 1_600_000_000
    me = (os.geteuid(), os.getegid())
    assert seen == {"bin": (*me, "0o755"), "bin/tool": (*me, "0o755"), "secret.py": (*me, "0o644"),
                    "private": (*me, "0o755"), "private/x.py": (*me, "0o644")}
    assert oct(os.stat(layer).st_mode & 0o7777) == "0o755" and os.stat(layer).st_uid == os.geteuid()


def test_nothing_but_the_layer_is_left_in_the_images_dir(tmp_path, serve):
    """The download's scratch file has no name once open, so no failure leaves one behind."""
    base, _ = serve({"env": ENV, "code": CODE})
    ensure_image(str(tmp_path), IMAGE, artifact(base))
    assert sorted(os.listdir(tmp_path / "code")) == ["c" * 64, "c" * 64 + ".json"]
    assert sorted(os.listdir(tmp_path / "env")) == ["e" * 64, "e" * 64 + ".json"]


def test_a_body_longer_than_the_assignment_says_is_cut_off_and_leaves_nothing(tmp_path, serve):
    base, _ = serve({"env": ENV, "code": CODE})
    layers = artifact(base)
    layers["layers"][1]["size"] = 1000
    with pytest.raises(ImageError, match="longer than the 1000 bytes the assignment says"):
        ensure_image(str(tmp_path), IMAGE, layers)
    assert os.listdir(tmp_path / "code") == []


def test_the_metrics_count_each_fetch_its_bytes_and_a_failure_but_not_a_finished_image(tmp_path, serve):
    from nodeagent.metrics import AgentMetrics
    counted = AgentMetrics()
    base, _ = serve({"env": ENV, "code": CODE})
    cache = ImageCache(str(tmp_path), on_fetch=counted.fetched)
    cache.ensure(IMAGE, artifact(base))
    cache.ensure(IMAGE, artifact(base))   # there already: no fetch
    with pytest.raises(ImageError):
        cache.ensure("sha256:" + "3" * 64, artifact(base, code_id="sha256:" + "d" * 64, code_sha="0" * 64))
    value = counted.registry.get_sample_value
    assert value("corral_agent_image_fetches_total", {"result": "success"}) == 1
    assert value("corral_agent_image_fetches_total", {"result": "failure"}) == 1
    assert value("corral_agent_image_fetch_bytes_total") == len(ENV) + len(CODE)
    assert value("corral_agent_image_fetch_duration_seconds_count") == 2
