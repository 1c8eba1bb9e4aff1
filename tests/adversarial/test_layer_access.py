"""Layers need a credential (issue 14, finding 4): hostile requests to real builders over real HTTP.

Two real builder daemons share one images folder (so either has every layer)
and one store (the layer keys; each says in it where it serves). The URLs are
signed as the leader signs them (:class:`reconciler.layer_urls.LayerUrls`),
for one node each. An attacker who can reach the builders but holds no
credential, or holds node-1's credentials and wants a layer assigned to
node-2 only, or keeps an old URL, or edits one, gets nothing; a real agent
given its own URLs fetches, verifies and runs the image, and goes to the
second builder when the first is stopped.
"""
import corral.green

corral.green.patch()

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from builder.layers import ensure_archive  # noqa: E402
from corral import image_layout, layer_access  # noqa: E402
from corral.store import open_store  # noqa: E402
from corral.store.base import DesiredInstance  # noqa: E402
from reconciler.layer_urls import LayerUrls  # noqa: E402
from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    HTTP_SERVER, NODE, agent, build_image_archive, key_file, reconciler, running, wait_for)
from nodeagent.pull import ImageCache, ImageError  # noqa: E402
from tests.support import free_port, serve_bytes  # noqa: E402

ARCHIVES = build_image_archive()
ENV_ID, CODE_ID, OTHER_CODE_ID = "sha256:" + "2" * 64, "sha256:" + "3" * 64, "sha256:" + "4" * 64
IMAGE, OTHER_IMAGE = "sha256:" + "1" * 64, "sha256:" + "5" * 64

BUILDER = """
import corral.green
corral.green.patch()
import json, sys
from builder.daemon import run
from corral.settings import Timings
run(**json.loads(sys.argv[1]), timings=Timings(build_poll=0.2, layer_copy_interval=0.3))
"""


def finished_layer(images_dir, kind, layer_id, archive):
    """A finished layer in ``images_dir`` as a build leaves it (folder and marker, archive not packed)."""
    folder = image_layout.layer_dir(images_dir, kind, layer_id)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="fully_trusted")
    image_layout.write_layer_marker(images_dir, kind, layer_id, {"id": layer_id, "kind": kind,
                                                                 "artifact_sha256": None, "size": None})


class Builders:
    """Two builder daemons b1 and b2 on one store and one images folder."""

    def __init__(self, tmp_path, shared=True):
        self.tmp = tmp_path
        self.images = str(tmp_path / "builder-images")   # not the agent's (tmp_path/images): it must fetch
        self.images_of = {"b1": self.images, "b2": self.images if shared else str(tmp_path / "builder2-images")}
        self.dsn = "sqlite:///" + str(tmp_path / "store" / "corral.db")
        self.store = open_store(self.dsn)
        self.procs, self.bases = {}, {name: f"http://127.0.0.1:{free_port()}" for name in ("b1", "b2")}
        self.recorded = {}   # image -> its artifact as the build recorded it (b1's URLs)
        for image, code_id in ((IMAGE, CODE_ID), (OTHER_IMAGE, OTHER_CODE_ID)):
            layers = []
            for kind, layer_id in (("env", ENV_ID), ("code", code_id)):
                if image_layout.read_layer_marker(self.images, kind, layer_id) is None:
                    finished_layer(self.images, kind, layer_id, ARCHIVES[kind])
                sha, size = ensure_archive(images_dir=self.images, cache_dir=str(tmp_path / "packed"), kind=kind,
                                           layer_id=layer_id)
                layer = {"kind": kind, "id": layer_id, "sha256": sha, "size": size}
                layers.append(dict(layer, url=self.url("b1", layer)))
            self.recorded[image] = {"layers": layers}
        for name in ("b1", "b2"):
            self.start(name)
        wait_for("both builders to say where they serve", lambda: len(self.store.list_builders()) == 2)

    def start(self, name):
        args = {"store_dsn": self.dsn, "listen": self.bases[name][len("http://"):],
                "cache_dir": str(self.tmp / f"cache-{name}"), "images_dir": self.images_of[name], "name": name,
                "metrics": "127.0.0.1:0"}
        log = open(self.tmp / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-c", BUILDER, json.dumps(args)], stdout=log, stderr=log)
        log.close()
        wait_for(f"builder {name} to answer", lambda: _answers(self.bases[name] + "/healthz"))

    def stop(self, name):
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    def url(self, name, layer, query=""):
        return f"{self.bases[name]}/layers/{layer['kind']}/{layer['id'][7:]}.tar" + (f"?{query}" if query else "")

    def assigned(self, node, image=IMAGE, now=None):
        """The artifact of ``image`` as the leader puts it in ``node``'s assignment."""
        signer = LayerUrls(self.store, ttl=600).signer(time.time() if now is None else now)
        return signer.artifact(node, image, self.recorded[image], True)

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.store.close()


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def builders(tmp_path):
    b = Builders(tmp_path)
    yield b
    b.close()


def assign(reconciler, iid, artifact):
    """Send the agent an assignment of one instance of IMAGE (a web server) with ``artifact``."""
    spec = {"command": HTTP_SERVER, "env": {}, "port": True, "restart": "always", "drainPeriod": 0,
            "stopGracePeriod": 5.0, "health": None}
    reconciler.assign([{"id": iid, "app": "hello", "process": "web", "revision": "1", "image": IMAGE,
                        "spec": spec, "artifact": artifact}], epoch=1)


def query_of(url):
    return url.split("?", 1)[1]


def code_layer(artifact):
    return next(layer for layer in artifact["layers"] if layer["kind"] == "code")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_layer_request_without_a_credential_is_401(builders, method):
    for name in ("b1", "b2"):
        for layer in builders.recorded[IMAGE]["layers"] + [{"kind": "env", "id": "sha256:" + "f" * 64}]:
            got = requests.request(method, builders.url(name, layer), timeout=10)
            assert got.status_code == 401, (name, layer["id"])
            assert method == "HEAD" or "credential" in got.text
            assert "X-Corral-Sha256" not in got.headers
        assert requests.request(method, builders.bases[name] + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_node_1s_credentials_do_not_open_a_layer_assigned_to_node_2_only(builders, method):
    """node-1 is assigned OTHER_IMAGE, node-2 IMAGE (whose code layer node-1 is not assigned)."""
    mine = builders.assigned("node-1", OTHER_IMAGE)
    theirs = code_layer(builders.recorded[IMAGE])
    for layer in mine["layers"]:
        assert requests.request(method, layer["url"], timeout=10).status_code == 200   # node-1's own: fine
    own = query_of(code_layer(mine)["url"])
    attempts = {
        "its own code credential on their layer": own,
        "its own credential, naming node-2": own.replace("node=node-1", "node=node-2"),
        "its env credential on their code layer": query_of(mine["layers"][0]["url"]),
    }
    for what, query in attempts.items():
        for name in ("b1", "b2"):
            got = requests.request(method, builders.url(name, theirs, query), timeout=10)
            assert got.status_code == 403, what
            assert got.headers.get("Content-Type", "").startswith("text/plain") and "X-Corral-Sha256" not in got.headers
    theirs_signed = code_layer(builders.assigned("node-2", IMAGE))["url"]
    assert requests.request(method, theirs_signed, timeout=10).status_code == 200   # node-2's own


def test_an_expired_or_tampered_credential_is_403(builders):
    key = builders.store.layer_keys()[0][1]
    layer = code_layer(builders.recorded[IMAGE])
    hexid = layer["id"][7:]
    good = query_of(code_layer(builders.assigned("node-2"))["url"])
    sig = good.split("sig=")[1]
    past = int(time.time()) - 1
    bad = {
        "expired": f"node=node-2&exp={past}&sig={layer_access.sign(key, 'code', hexid, 'node-2', past)}",
        "one digit of the signature changed": good.replace(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1")),
        "the expiry moved on": good.replace("exp=", "exp=9"),
        "signed with a key of the attacker's": "node=node-2&exp={0}&sig={1}".format(
            past + 3600, layer_access.sign(b"k" * 32, "code", hexid, "node-2", past + 3600)),
        "the signature doubled": good + "&sig=" + sig,
        "no signature": good.split("&sig=")[0],
    }
    for what, query in bad.items():
        for method in ("GET", "HEAD"):
            assert requests.request(method, builders.url("b1", layer, query), timeout=10).status_code == 403, what
    assert requests.get(builders.url("b1", layer, good), timeout=10).status_code == 200


def test_a_url_signed_with_a_rotated_key_is_served_the_moment_it_is_made(builders):
    """A rotation adds a key: a builder reads the keys again on a signature it cannot explain (at most every
    few seconds), and still serves URLs signed with the key before."""
    layer = code_layer(builders.recorded[IMAGE])
    before = builders.assigned("node-2")
    assert requests.get(code_layer(before)["url"], timeout=10).status_code == 200
    builders.store.rotate_layer_key()
    after = builders.assigned("node-2")
    assert code_layer(after)["url"] != code_layer(before)["url"]
    wait_for("the new key's URL served", lambda: requests.get(code_layer(after)["url"], timeout=10).status_code == 200,
             timeout=15)
    assert requests.get(code_layer(before)["url"], timeout=10).status_code == 200
    assert requests.get(builders.url("b2", layer, query_of(code_layer(after)["url"])), timeout=10).status_code == 200


def test_a_real_agent_fetches_its_layers_with_its_own_credential(agent, reconciler, builders):
    handle = agent()
    assign(reconciler, "hello-web-1", builders.assigned(NODE))
    wait_for("the instance running from layers fetched with its credential", lambda: running(reconciler, "hello-web-1"))
    marker = image_layout.read_layer_marker(str(handle.images_dir), "code", CODE_ID)
    assert marker["source"] == "agent" and "sig=" not in json.dumps(marker), "fetched; no credential kept on disk"


def test_a_forged_url_in_an_assignment_fails_the_instance_and_names_no_credential(agent, reconciler, builders):
    agent()
    forged = builders.assigned(NODE)
    for layer in forged["layers"]:
        layer["url"] = layer["url"].replace("sig=", "sig=0")[:len(layer["url"])]
        layer["urls"] = [layer["url"]]
    assign(reconciler, "hello-web-2", forged)
    inst = wait_for("the instance failing its fetch",
                    lambda: (lambda i: i if i and i["state"] in ("failed", "backoff") and i["message"] else None)(
                        reconciler.instance("hello-web-2")))
    assert "sig=" not in inst["message"] and "answered HTTP 403" in inst["message"]


def test_a_layer_is_fetched_from_the_second_builder_when_the_first_is_stopped(agent, reconciler, builders):
    artifact = builders.assigned(NODE)
    assert all(len(layer["urls"]) == 2 and layer["urls"][0].startswith(builders.bases["b1"])
               and layer["urls"][1].startswith(builders.bases["b2"]) for layer in artifact["layers"])
    builders.stop("b1")
    with pytest.raises(requests.ConnectionError):
        requests.get(artifact["layers"][0]["url"], timeout=5)
    handle = agent()
    assign(reconciler, "hello-web-3", artifact)
    wait_for("the instance running from the second builder's layers", lambda: running(reconciler, "hello-web-3"))
    assert image_layout.read_layer_marker(str(handle.images_dir), "code", CODE_ID)["source"] == "agent"


def test_a_hostile_first_url_does_not_weaken_the_checks(agent, reconciler, builders):
    """A layer's first URLs lead to a server serving other bytes of the same length, then one longer than the
    assignment's size, then a dead port: each is refused by the same checks, and the real builder, last,
    gives the layer; nothing of the hostile bodies is left on disk."""
    artifact = builders.assigned(NODE)
    hostile = {}
    for layer in artifact["layers"]:
        path = f"layers/{layer['kind']}/{layer['id'][7:]}.tar"
        hostile[path] = bytes(layer["size"])                      # zeros: the size, not the digest
        hostile["long/" + path] = bytes(layer["size"] + 4096)       # past the size
    hits = []
    server = serve_bytes(hostile, hits)
    try:
        for layer in artifact["layers"]:
            path = f"layers/{layer['kind']}/{layer['id'][7:]}.tar"
            layer["urls"] = [f"{server.url}/{path}", f"{server.url}/long/{path}",
                             f"http://127.0.0.1:{free_port()}/{path}"] + layer["urls"]
            layer["url"] = layer["urls"][0]
        handle = agent()
        assign(reconciler, "hello-web-4", artifact)
        wait_for("the instance running from the real builder's layers", lambda: running(reconciler, "hello-web-4"))
    finally:
        server.shutdown()
        server.server_close()
    assert len(hits) == 4, hits   # both hostile bodies asked for, for each layer
    code = image_layout.layer_dir(str(handle.images_dir), "code", CODE_ID)
    with open(f"{code}/hello.txt") as f:
        assert f.read() == "hello from the image\n"
    leftovers = [n for kind in ("env", "code") for n in os.listdir(handle.images_dir / kind)
                 if n.startswith((".tmp-", ".download-"))]
    assert leftovers == []


def test_a_fetch_retried_after_its_urls_expired_takes_the_newest_assignments(builders, tmp_path):
    """An agent's image cache holds an instance's first artifact, whose URLs expired while its fetch was
    failing; the assignment since carries fresh ones for the same layers: the retry uses those. One naming
    another digest is not taken: the instance keeps what it was assigned, and fails as it did."""
    stale = builders.assigned(NODE, now=time.time() - 3600)       # signed an hour ago: expired
    fresh = builders.assigned(NODE)
    (tmp_path / "node-a").mkdir()
    cache = ImageCache(str(tmp_path / "node-a"))
    with pytest.raises(ImageError, match="answered HTTP 403"):
        cache.ensure(IMAGE, stale)
    lying = {"layers": [dict(layer, sha256="0" * 64) for layer in fresh["layers"]]}
    cache.offer([{"image": IMAGE, "artifact": lying}])
    with pytest.raises(ImageError, match="answered HTTP 403"):
        cache.ensure(IMAGE, stale)
    cache.offer([{"image": IMAGE, "artifact": fresh}])
    folder = cache.ensure(IMAGE, stale)
    assert image_layout.read_marker(str(tmp_path / "node-a"), IMAGE) is not None and os.path.isdir(folder)


def test_a_builder_with_its_own_images_copies_the_layers_another_made_and_serves_them_alone(
        agent, reconciler, tmp_path):
    """Two builders on separate disks: b2 copies the layers of a desired image that b1 built (checked as an
    agent checks them), so with b1 stopped a node fetches the image from b2 alone."""
    builders = Builders(tmp_path, shared=False)
    try:
        epoch = builders.store.acquire_lease("leader", "test", ttl=600).epoch
        build = builders.store.enqueue_build("k1", "hello", {})
        builders.store.finish_build(builders.store.claim_build("b9", stale_after=600).id, "b9", state="succeeded",
                                    image=IMAGE, layers=builders.recorded[IMAGE]["layers"])
        assert build.key == "k1"
        builders.store.write_desired(epoch, [DesiredInstance("hello-web-5", "hello", "web", NODE, "1", IMAGE,
                                                             {"command": ["x"]}, 0.0)], [])
        cache = tmp_path / "cache-b2" / "replicas"
        wait_for("b2 to copy both layers", lambda: cache.exists() and sorted(
            n for n in os.listdir(cache) if n.endswith(".json")) == sorted(
            f"{kind}-{layer_id[7:]}.json" for kind, layer_id in (("env", ENV_ID), ("code", CODE_ID))), timeout=30)
        assert not os.path.exists(os.path.join(builders.images_of["b2"], "code", CODE_ID[7:])), "copied, not built"
        layer = code_layer(builders.recorded[IMAGE])
        assert requests.get(builders.url("b2", layer), timeout=10).status_code == 401   # a copy needs one too
        artifact = builders.assigned(NODE)
        builders.stop("b1")
        handle = agent()
        assign(reconciler, "hello-web-5", artifact)
        wait_for("the instance running from b2's copies", lambda: running(reconciler, "hello-web-5"))
        assert image_layout.read_layer_marker(str(handle.images_dir), "code", CODE_ID)["source"] == "agent"
        with pytest.raises(requests.ConnectionError):   # so it came from b2, the one builder up
            requests.get(builders.url("b1", layer), timeout=5)
        builders.store.write_desired(epoch, [], ["hello-web-5"])
        wait_for("b2 to drop the copies no desired image names", lambda: not [
            n for n in os.listdir(cache) if n.endswith(".json")], timeout=30)
    finally:
        builders.close()
