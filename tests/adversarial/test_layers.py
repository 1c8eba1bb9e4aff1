"""Crafted image layers served to a real agent (issue 13, finding 5).

Each test serves a code layer made the way an attacker would make it (a
set-id file, a device, a FIFO, a hard link out, ``..``, an absolute name, a
write through an earlier symlink, header numbers that GNU tar and a naive
``int()`` read differently, a truncated body, a body that does not match its
digest) to a real agent process over real HTTP, and checks that:

- the instance fails with a sentence naming the member and why (the agent
  retries the fetch with the backoff, and each retry is refused the same);
- nothing of the layer is on disk: no set-id file, device or FIFO anywhere
  under the images dir, no unpacked member, no temporary folder or file;
- a good image assigned after it still fetches and serves.

The set-id and device cases need root (only root's extraction keeps a
set-id bit or can make a device): CI runs as root.
"""
import corral.green

corral.green.patch()

import hashlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402
import tarfile  # noqa: E402
import threading  # noqa: E402

import pytest  # noqa: E402

from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    HTTP_SERVER, agent, build_image_archive, key_file, reconciler, running, wait_for)
from tests.support import need_root  # noqa: E402

GOOD = build_image_archive()
ENV_ID = "sha256:" + "2" * 64
BAD_CODE_ID, GOOD_CODE_ID = "sha256:" + "b" * 64, "sha256:" + "9" * 64
BAD_IMAGE, GOOD_IMAGE = "sha256:" + "a" * 64, "sha256:" + "8" * 64
Z = bytes(512)
SIZE, MODE = slice(124, 136), slice(100, 108)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# -- crafting -------------------------------------------------------------------------------------------

def header(name, kind=tarfile.REGTYPE, *, size=0, mode=0o644, linkname="", dev=(0, 0)):
    """A GNU tar header block for one member, as bytes one may then change (see :func:`set_field`)."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, linkname
    info.devmajor, info.devminor = dev
    return bytearray(info.tobuf(tarfile.GNU_FORMAT))


def set_field(block, field, value):
    """``block`` with ``field`` set to ``value`` and its checksum made right again, as an attacker would."""
    assert len(value) == field.stop - field.start
    block[field] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return block


def member(name, kind=tarfile.REGTYPE, data=b"", **fields):
    """A whole member: its header and its data padded to blocks."""
    return bytes(header(name, kind, size=len(data), **fields)) + data + bytes(-len(data) % 512)


def layer(*members):
    """A layer archive: ``members`` then the end-of-archive marker and padding."""
    body = b"".join(members) + Z + Z
    return body + bytes(-len(body) % 10240)


def leading_nul_size():
    """A size field whose first byte is NUL: a naive parser reads 0 (empty text), GNU tar skips the NUL
    ("buggy tar of unknown vintage") and reads 512, exits 0. The block after it is then a harmless
    header to the naive parser and data to tar; the device header two blocks on is the naive parser's
    data (of "pad") and tar's next header: tar made the device the scanner never saw."""
    decoy = set_field(header("decoy"), SIZE, b"\x0000000001000")
    pad = header("pad", size=1024)
    device = header("evil", tarfile.CHRTYPE, dev=(1, 3))
    return bytes(decoy) + bytes(pad) + bytes(device) + Z + Z + Z + Z + bytes(10240 - 7 * 512)


def lenient_size(text):
    """A member whose size is ``text`` (12 bytes): read as 512 by ``int(text, 8)``, not by GNU tar (``_``,
    ``0o``) or not the same (inner space: tar reads up to the space), with a device header where its
    data would be."""
    decoy = set_field(header("decoy"), SIZE, text)
    return layer(bytes(decoy) + bytes(header("evil", tarfile.CHRTYPE, dev=(1, 3))))


# -- serving --------------------------------------------------------------------------------------------

class Server:
    """An HTTP server on 127.0.0.1 (a green thread of this process) answering ``GET /NAME`` with
    ``files[NAME]``; a name in ``held`` sends its first ``held[NAME]`` bytes, then waits for
    :meth:`release` before the rest, or closes there when ``cut`` holds the name (a truncated body
    with its full Content-Length)."""

    def __init__(self, files, held=None, cut=()):
        import http.server   # after eventlet greened the process: see tests.support.serve_bytes
        self.files, self.held, self.cut, self.go = files, held or {}, set(cut), threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                first = server.held.get(name, len(data))
                self.wfile.write(data[:first])
                self.wfile.flush()
                if first < len(data):
                    server.go.wait(30)
                    if name in server.cut:
                        self.close_connection = True
                        return
                    self.wfile.write(data[first:])

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def release(self):
        self.go.set()

    def close(self):
        self.go.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def serve():
    """serve(bad code layer bytes, held=..., cut=...) -> Server with the good image's layers beside it."""
    servers = []

    def start(bad, **kwargs):
        files = {"env.tar": GOOD["env"], "code.tar": GOOD["code"], "bad.tar": bad}
        servers.append(Server(files, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def assignment(iid, server, *, bad, code_sha=None):
    """An instance of the bad image (code layer /bad.tar, with ``code_sha`` or the body's own sha256)
    or of the good one, sharing the good env layer."""
    code = server.files["bad.tar"] if bad else GOOD["code"]
    layers = [{"kind": "env", "id": ENV_ID, "url": f"{server.url}/env.tar", "sha256": sha(GOOD["env"]),
               "size": len(GOOD["env"])},
              {"kind": "code", "id": BAD_CODE_ID if bad else GOOD_CODE_ID,
               "url": f"{server.url}/{'bad' if bad else 'code'}.tar", "sha256": code_sha or sha(code)}]
    spec = {"command": HTTP_SERVER, "env": {}, "port": True, "restart": "always", "drainPeriod": 0,
            "stopGracePeriod": 5.0, "health": None}
    return {"id": iid, "app": "hello", "process": "web", "revision": "1", "image": BAD_IMAGE if bad else GOOD_IMAGE,
            "artifact": {"layers": layers}, "spec": spec}


# -- checking -------------------------------------------------------------------------------------------

def hostile_files(root):
    """Every path under ``root`` that is set-id, a device, a FIFO or a socket, with what it is."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(f"{path} (set-id, mode {stat.S_IMODE(mode):04o})")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                found.append(f"{path} ({stat.filemode(mode)})")
    return found


def names_under(root):
    return {name for _, dirs, files in os.walk(root) for name in dirs + files}


def failed(reconciler, iid):
    inst = reconciler.instance(iid)
    return inst if inst and inst["state"] == "failed" else None


def refused(agent, reconciler, server, said, *, absent=(), code_sha=None):
    """Assign the bad image; it must fail with a message matching ``said`` (a regex) and leave nothing:
    no hostile file, none of the member names ``absent`` under the images dir. Then the good image
    must serve, and once the bad instance is gone no trace of its layer stays. Returns the message."""
    handle = agent()
    reconciler.assign([assignment("bad-1", server, bad=True, code_sha=code_sha)], epoch=1)
    # a layer let through shows as a hostile file or a running instance: fail on it at once, naming it
    wait_for("the bad instance failed", lambda: failed(reconciler, "bad-1") or hostile_files(handle.images_dir)
             or running(reconciler, "bad-1"))
    assert hostile_files(handle.images_dir) == []
    inst = reconciler.instance("bad-1")
    assert inst["state"] == "failed", f"the bad layer was let through: the instance is {inst['state']}"
    message = inst["message"]
    assert re.search(said, message), message
    assert not names_under(handle.images_dir) & set(absent), "a member of the refused layer is on disk"
    reconciler.assign([assignment("good-1", server, bad=False)], epoch=1)
    wait_for("the good instance running", lambda: running(reconciler, "good-1"))
    wait_for("the bad instance forgotten", lambda: reconciler.instance("bad-1") is None)
    code = handle.images_dir / "code"
    wait_for("no trace of the bad layer", lambda: sorted(os.listdir(code)) == ["9" * 64, "9" * 64 + ".json"])
    assert hostile_files(handle.images_dir) == []
    assert not names_under(handle.images_dir) & set(absent)
    return message


# -- the attacks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o4755, 0o2755], ids=["setuid", "setgid"])
def test_a_set_id_file_is_refused_and_never_on_disk(agent, reconciler, serve, mode):
    need_root("a set-id bit survives only an extraction by root (CI runs as root)")
    server = serve(layer(member("main.py", data=b"print('hi')\n"), member("su", data=b"\x7fELF", mode=mode)))
    refused(agent, reconciler, server, rf"member 'su' has set-id or sticky bits \(mode {mode:04o}\)", absent={"su"})


def test_a_sticky_folder_is_refused(agent, reconciler, serve):
    server = serve(layer(member("shared", tarfile.DIRTYPE, mode=0o1777)))
    refused(agent, reconciler, server, r"member 'shared/?' has set-id or sticky bits", absent={"shared"})


@pytest.mark.parametrize("kind, said", [(tarfile.CHRTYPE, "a character device"), (tarfile.BLKTYPE, "a block device")],
                         ids=["char", "block"])
def test_a_device_node_is_refused(agent, reconciler, serve, kind, said):
    need_root("only root can make a device node (CI runs as root)")
    server = serve(layer(member("main.py", data=b"x\n"), member("mem", kind, dev=(1, 1))))
    refused(agent, reconciler, server, f"member 'mem' is {said}", absent={"mem"})


def test_a_fifo_is_refused(agent, reconciler, serve):
    server = serve(layer(member("pipe", tarfile.FIFOTYPE)))
    refused(agent, reconciler, server, "member 'pipe' is a FIFO", absent={"pipe"})


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", "later.py", "nowhere"])
def test_a_hard_link_out_of_the_layer_or_to_no_earlier_member_is_refused(agent, reconciler, serve, target):
    server = serve(layer(member("main.py", data=b"x\n"), member("passwd", tarfile.LNKTYPE, linkname=target),
                         member("later.py", data=b"y\n")))
    refused(agent, reconciler, server,
            f"member 'passwd' is a hard link to '{target}', which is not an earlier file of the layer",
            absent={"passwd", "later.py"})


@pytest.mark.parametrize("name, said", [("../../../evil.py", "'..' in its name"),
                                        ("app/../../evil.py", "'..' in its name"),
                                        ("/tmp/corral-adversarial-evil.py", "an absolute name")],
                         ids=["dot-dot", "dot-dot-inner", "absolute"])
def test_a_name_out_of_the_layer_is_refused(agent, reconciler, serve, name, said):
    server = serve(layer(member("main.py", data=b"x\n"), member(name, data=b"evil\n")))
    refused(agent, reconciler, server, f"member '{name}' has {said}: it points outside the layer folder",
            absent={"evil.py"})
    assert not os.path.exists("/tmp/corral-adversarial-evil.py")


def test_a_write_through_an_earlier_symlink_is_refused(agent, reconciler, serve, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    server = serve(layer(member("lib", tarfile.SYMTYPE, linkname=str(outside)),
                         member("lib/evil.py", data=b"evil\n")))
    refused(agent, reconciler, server, "member 'lib/evil.py' would be written through the symbolic link 'lib'",
            absent={"evil.py"})
    assert os.listdir(outside) == []


def test_a_size_tar_reads_past_a_leading_nul_is_refused_and_no_device_is_made(agent, reconciler, serve):
    """The finding itself: the old scanner read this size as 0 and passed the layer; GNU tar read 512,
    unpacked the device header the scanner took for data, and exited 0."""
    need_root("only root can make the device node the attack hides (CI runs as root)")
    server = serve(leading_nul_size())
    refused(agent, reconciler, server, r"member 'decoy': its size field .* is not a strict octal number",
            absent={"evil", "pad"})


@pytest.mark.parametrize("text", [b"0000001_000\x00", b"0o0000001000", b"0000001 000\x00", b"+0000001000\x00"],
                         ids=["underscore", "0o-prefix", "inner-space", "plus"])
def test_a_size_int_reads_leniently_is_refused(agent, reconciler, serve, text):
    server = serve(lenient_size(text))
    refused(agent, reconciler, server, r"member 'decoy': its size field .* is not a strict octal number",
            absent={"evil", "decoy"})


def test_a_mode_with_an_underscore_is_refused(agent, reconciler, serve):
    bad = set_field(header("tool", size=3), MODE, b"0_04755\x00")
    server = serve(layer(bytes(bad) + b"x=1" + bytes(509)))
    refused(agent, reconciler, server, r"member 'tool': its mode field .* is not a strict octal number",
            absent={"tool"})


def early_then_rest():
    """A layer whose first member (early.py) is whole in its first 1.5 MiB, and that byte count: more than
    the 1 MiB the agent reads at a time, so that a first read returns while the server waits."""
    body = layer(member("early.py", data=b"print('early')\n"), member("rest.py", data=os.urandom(3 << 20)))
    return body, 3 << 19


def scratch_holds(handle, n):
    """Whether the agent holds open a deleted download file of at least ``n`` bytes (its scratch file)."""
    fds = f"/proc/{handle.proc.pid}/fd"
    for fd in os.listdir(fds):
        try:
            target = os.readlink(f"{fds}/{fd}")
            if ".download-" in target and target.endswith("(deleted)") and os.stat(f"{fds}/{fd}").st_size >= n:
                return True
        except OSError:
            pass
    return False


@pytest.mark.parametrize("case", ["digest-mismatch", "truncated"])
def test_nothing_is_unpacked_before_the_whole_body_is_verified(agent, reconciler, serve, case):
    """The body's first half (a whole member) arrives, then the server waits: nothing may be unpacked
    yet. Then the rest comes with a digest other than the assignment's, or the connection closes
    short of its Content-Length: refused, nothing on disk."""
    body, half = early_then_rest()
    server = serve(body, held={"bad.tar": half}, cut={"bad.tar"} if case == "truncated" else ())
    handle = agent()
    reconciler.assign([assignment("bad-1", server, bad=True, code_sha="0" * 64 if case == "digest-mismatch" else None)],
                      epoch=1)
    wait_for("the first half in the agent's scratch file, or unpacked",
             lambda: scratch_holds(handle, 1 << 20) or "early.py" in names_under(handle.images_dir))
    assert "early.py" not in names_under(handle.images_dir), "a member was unpacked before the body was verified"
    server.release()
    message = wait_for("the bad instance failed", lambda: failed(reconciler, "bad-1"))["message"]
    said = "has sha256 .*, expected 0{64}" if case == "digest-mismatch" else "downloading .* failed"
    assert re.search(said, message), message
    assert not names_under(handle.images_dir) & {"early.py", "rest.py"}
    reconciler.assign([assignment("good-1", server, bad=False)], epoch=1)
    wait_for("the good instance running", lambda: running(reconciler, "good-1"))
    wait_for("the bad instance forgotten", lambda: reconciler.instance("bad-1") is None)
    wait_for("no trace of the bad layer", lambda: sorted(os.listdir(handle.images_dir / "code")) == [
        "9" * 64, "9" * 64 + ".json"])
