"""`corral doctor --role node|control-plane`: check a host before and after install.

:func:`gather` is the one place that looks at the machine (kernel, cgroups,
namespaces, disks, ports, peers); :mod:`corral.cli.diagnosis` judges what it
found, purely. Peers come from the flags, else the client config
(``corral up`` writes it) and ``CORRAL_STORE``.
"""
import ctypes
import ctypes.util
import email.utils
import os
import platform
import shutil
import socket
import sys
import time

import corral
from corral.cli import diagnosis
from corral.cli.verbs import add_verb

ASK_TIMEOUT = 3.0
STA_UNSYNC = 0x0040
TIME_ERROR = 5


def add_parser(sub):
    """Register `corral doctor` on the subparsers ``sub``."""
    p = add_verb(sub, "doctor", "check this host for what corral needs (kernel, cgroups, clock, disk, ports, "
                                "peers) and print each problem with its fix",
                 ["corral doctor --role node --api http://10.0.0.1:7070 --reconciler tcp://10.0.0.1:7071",
                  "corral doctor --role control-plane --store postgresql://corral@db1:5432/corral"])
    p.add_argument("--role", required=True, choices=sorted(diagnosis.CHECKS),
                   help="node (runs an agent) or control-plane (runs a reconciler or a builder)")
    p.add_argument("--api", action="append", default=[], metavar="URL",
                   help="a reconciler's API to reach (repeatable; default: the client config's)")
    p.add_argument("--reconciler", action="append", default=[], metavar="tcp://HOST:PORT",
                   help="node: a reconciler's bus to reach (repeatable)")
    p.add_argument("--builder", action="append", default=[], metavar="URL",
                   help="a builder to reach (repeatable; default: the client config's)")
    p.add_argument("--store", default=None, metavar="DSN",
                   help="control-plane: the store to reach (default $CORRAL_STORE)")
    p.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose disk to check (repeatable; default: /var/lib/corral, and "
                        "/var/cache/corral on a control-plane host)")
    p.add_argument("--port", action="append", type=int, default=[], metavar="PORT",
                   help="control-plane: a port corral listens on (repeatable; default 7070, 7071, 7072)")


def run(args):
    """Gather, judge, print; exit 1 when a problem was found."""
    text, code = diagnosis.report(diagnosis.diagnose(gather(args)))
    print(text)
    return code


def gather(args):
    """Every fact the checks of ``args.role`` read, from this machine and the peers named."""
    from corral.cli.client import ClientError, load_full_config
    from corral.settings import Timings
    from corral.store.schema import SCHEMA_VERSION
    apis, builders = list(args.api), list(args.builder)
    if not apis and not builders:
        try:
            apis, _, builders = load_full_config()
        except ClientError:
            pass
    node = args.role == "node"
    folders = args.data_dir or (["/var/lib/corral"] if node else ["/var/lib/corral", "/var/cache/corral"])
    peers = [api_peer(url) for url in apis] + [builder_peer(url) for url in builders]
    if node:
        peers += [bus_peer(endpoint) for endpoint in args.reconciler]
    store = args.store or os.environ.get("CORRAL_STORE")
    if not node and store:
        peers.append(store_peer(store))
    mounts = _read("/proc/self/mounts") or ""
    return diagnosis.Facts(
        role=args.role, is_root=os.geteuid() == 0, python=tuple(sys.version_info[:3]), kernel=platform.release(),
        pidfd_error=pidfd_error(), mounts=mounts, controllers=cgroup2_controllers(mounts),
        mount_ns_error=mount_ns_error() if node else None, useradd=shutil.which("useradd") is not None,
        kernel_clock_synced=kernel_clock_synced(), disks=tuple(disk_of(f) for f in folders),
        ports=tuple(port_facts(args.port or [7070, 7071, 7072])) if not node else (),
        peers=tuple(peers), replay_window=Timings().replay_window, code_schema=SCHEMA_VERSION,
        version=corral.__version__)


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def pidfd_error():
    """None when ``pidfd_open`` works here, else why not."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return None
    except (AttributeError, OSError) as e:
        return str(e) or type(e).__name__


def cgroup2_controllers(mounts):
    """The ``cgroup.controllers`` text of every cgroup2 mount."""
    from nodeagent import cgroups
    return {point: _read(os.path.join(point, "cgroup.controllers")) for point in cgroups.cgroup2_mounts(mounts)}


def mount_ns_error():
    """None when an instance may have a mount namespace of its own here (the agent's own probe,
    :func:`nodeagent.sandbox.refusal`), else why not."""
    from nodeagent import sandbox
    return sandbox.refusal()


class _Timex(ctypes.Structure):
    _fields_ = ([("modes", ctypes.c_uint)] + [(n, ctypes.c_long) for n in ("offset", "freq", "maxerror", "esterror")]
                + [("status", ctypes.c_int)] + [("rest", ctypes.c_long * 40)])


def kernel_clock_synced():
    """Whether the kernel's clock is kept by NTP (``adjtimex``: not TIME_ERROR, no STA_UNSYNC); None unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        t = _Timex()
        state = libc.adjtimex(ctypes.byref(t))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not t.status & STA_UNSYNC


def disk_of(folder):
    """``(folder, free, total)`` of the file system that holds ``folder`` (or its nearest existing parent)."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    return folder, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def port_facts(ports):
    """``(port, what, holder)`` of each port: holder None when free, else who listens there."""
    what = {7070: "a reconciler's API", 7071: "a reconciler's bus", 7072: "a builder"}
    holders = listeners()
    out = []
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
                holder = holders.get(port)
            except OSError:
                holder = holders.get(port, "another program")
        out.append((port, what.get(port, "corral"), holder))
    return out


def listeners():
    """``{port: "corral VERB (pid N)" or "COMMAND (pid N)"}`` of the TCP sockets listening here (root sees all)."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (_read(table) or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":   # LISTEN
                inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = target[8:-1] if target.startswith("socket:[") else None
            if inode in inodes:
                found[inodes[inode]] = _who(pid)
    return found


def _who(pid):
    argv = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
    words = [os.path.basename(w) for w in argv if w]
    if "corral" in words:
        verb = words[words.index("corral") + 1] if words.index("corral") + 1 < len(words) else ""
        return f"corral {verb} (pid {pid})"
    return f"{words[0] if words else '?'} (pid {pid})"


def _get(url, path):
    """``(status, body bytes, Date header as seconds or None, local time at the answer)`` of GET url+path."""
    from corral.cli.client import connect
    conn, base = connect(url, ASK_TIMEOUT, ASK_TIMEOUT)
    try:
        sent = time.time()
        conn.request("GET", base + path)
        r = conn.getresponse()
        body = r.read(1 << 20)   # a health answer is small, whoever answers
        now = (sent + time.time()) / 2
        date = r.getheader("Date")
        return r.status, body, email.utils.parsedate_to_datetime(date).timestamp() if date else None, now
    finally:
        conn.close()


def _http_peer(role, url):
    import json
    from corral.cli.client import Unreachable
    try:
        status, body, date, now = _get(url, "/healthz")
        health = json.loads(body) if status == 200 else None
    except (Unreachable, OSError, ValueError) as e:
        return diagnosis.Peer(role, url, error=str(e) or type(e).__name__)
    if not isinstance(health, dict):
        return diagnosis.Peer(role, url, error=f"HTTP {status} without a corral health answer")
    # the Date header has whole seconds: an offset under 1 s is none that can be told
    offset = None if date is None else (0.0 if abs(date - now) < 1.0 else date - now)
    return diagnosis.Peer(role, url, version=health.get("version"), clock_offset=offset)


def api_peer(url):
    """A reconciler's API: its /healthz, its version and its clock."""
    return _http_peer("reconciler", url)


def builder_peer(url):
    """A builder: its /healthz and its version."""
    return _http_peer("builder", url)


def bus_peer(endpoint):
    """A reconciler's bus: whether a TCP connection to it opens."""
    from urllib.parse import urlsplit
    try:
        u = urlsplit(endpoint.replace("tcp://", "http://", 1))
        with socket.create_connection((u.hostname, u.port), timeout=ASK_TIMEOUT):
            pass
    except (OSError, ValueError, TypeError) as e:
        return diagnosis.Peer("bus", endpoint, error=str(e) or type(e).__name__)
    return diagnosis.Peer("bus", endpoint)


def store_peer(dsn):
    """The store: whether it opens, and its schema version (nothing is migrated or written)."""
    from corral.store import StoreError, open_store
    shown = _redact(dsn)
    if dsn.startswith("sqlite://") and not os.path.exists(dsn[len("sqlite://"):]):
        return diagnosis.Peer("store", shown, schema=0)   # the first reconciler makes it; nothing is made here
    try:
        store = open_store(dsn, migrate=False)
        try:
            return diagnosis.Peer("store", shown, schema=store.schema_version())
        finally:
            store.close()
    except (StoreError, ValueError, OSError) as e:
        return diagnosis.Peer("store", shown, error=str(e).replace(dsn, shown) or type(e).__name__)


def _redact(dsn):
    """``dsn`` with its password, if any, shown as ``<redacted>``."""
    head, sep, rest = dsn.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{head}{sep}{creds.split(':', 1)[0]}:<redacted>@{host}"
    return dsn
