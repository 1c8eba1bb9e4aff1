"""Running one health check against a live instance (the I/O side of :mod:`nodeagent.health`).

A tcp check connects and closes with a reset (``SO_LINGER`` 0), as Kubernetes'
probes do since kubernetes/kubernetes#115143: a check every second of
hundreds of instances otherwise leaves thousands of sockets in TIME_WAIT and
costs the agent a FIN exchange per check. A numeric address is connected to
as it is, without a name lookup per check, by a plain non-blocking socket
that asks a second time before it waits in the hub (``trampoline``), rather
than a green socket: on the same host the handshake is over by then, and the
connect is most of what the agent does when hundreds of instances idle.

An exec check is a command of the app's, run exactly as the app's own
process is (:mod:`nodeagent.identity`): as the instance's user with no
supplementary groups and ``no_new_privs``, in its cgroup when it has one, in
a session of its own, with the instance's env and code folder. Without a known
identity it is not run at all (a failed check). When it ends, or at its
timeout, whatever is left of its process group is SIGKILLed and reaped: a
check leaves nothing behind.
"""
import errno
import functools
import os
import signal
import socket
import struct
import subprocess
import time

import eventlet
import eventlet.hubs
import eventlet.patcher
import requests

from nodeagent import identity

_c_socket = eventlet.patcher.original("_socket")


def probe(check, address, port, env, cwd, run_as=None):
    """Run ``check`` once; returns ``(ok, detail)``, ``detail`` one phrase of what was seen.

    ``run_as`` (a :class:`nodeagent.identity.RunAs`) is who an exec check runs as;
    without it an exec check is not run and fails."""
    if check.kind == "exec":
        if run_as is None:
            return False, f"{check.target[0]} was not run: the instance's user is not known"
        return _exec(check.target, env, cwd, check.timeout, run_as)
    if port is None:
        return False, f"a {check.kind} check needs the process to have a port (port: true)"
    if check.kind == "tcp":
        return _tcp(address, port, check.timeout)
    return _http(f"http://{address}:{port}{check.target}", check.timeout)


def _http(url, timeout):
    try:
        resp = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        return False, f"GET {url}: {e.__class__.__name__}"
    resp.close()
    return 200 <= resp.status_code < 400, f"GET {url} answered HTTP {resp.status_code}"


RESET_ON_CLOSE = struct.pack("ii", 1, 0)   # SO_LINGER on, 0 s: close() sends RST, no TIME_WAIT


@functools.lru_cache(maxsize=64)
def numeric_family(address):
    """AF_INET or AF_INET6 when ``address`` is a numeric IP address, else None (a name to look up)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
            return family
        except OSError:
            pass
    return None


def _tcp(address, port, timeout):
    family = numeric_family(address)
    try:
        if family is None:
            with socket.create_connection((address, port), timeout=timeout) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        else:
            _connect_numeric(family, address, port, timeout)
        return True, f"connected to {address}:{port}"
    except OSError as e:
        return False, f"connect to {address}:{port}: {e.strerror or e}"


def probe_now(check, address, port):
    """``(ok, detail)`` of ``check`` when it can be had without waiting: a tcp check of a numeric
    address whose connect is over (made or refused) by its second look; else None, and the check
    is to be run whole (:func:`probe`) where waiting blocks nobody else."""
    if check.kind != "tcp" or port is None:
        return None
    family = numeric_family(address)
    if family is None:
        return None
    try:
        return (True, f"connected to {address}:{port}") if _connect_numeric(family, address, port, None) else None
    except OSError as e:
        return False, f"connect to {address}:{port}: {e.strerror or e}"


_PENDING = (errno.EALREADY, errno.EINPROGRESS, errno.EAGAIN)


def _connect_numeric(family, address, port, timeout):
    """Connect to a numeric address and close with a reset: True once connected; raises OSError
    (``socket.timeout`` after ``timeout`` seconds) when it does not connect. With ``timeout``
    None it never waits: False when the connect is still in progress at its second look."""
    # the C socket itself (no Python wrapper to build and close), non-blocking from birth (no fcntl after)
    sock = _c_socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        err = sock.connect_ex((address, port))
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            # on the same host the handshake is usually over by now: no trip through the hub then
            err = sock.connect_ex((address, port))
            if err in _PENDING:
                if timeout is None:
                    return False
                eventlet.hubs.trampoline(sock.fileno(), write=True, timeout=timeout,
                                         timeout_exc=socket.timeout("timed out"))
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err and err != errno.EISCONN:
            raise OSError(err, os.strerror(err))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        return True
    finally:
        sock.close()


WAIT_STEP = 0.01   # seconds between looks at a running exec check (what eventlet's green wait does)
REAP_WAIT = 1.0    # seconds to collect what was left of a check's group after its SIGKILL


def _exec(argv, env, cwd, timeout, run_as):
    try:
        proc = identity.start(argv, run_as, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        return False, f"{argv[0]} could not be run ({e.strerror or e})"
    try:
        ended = _ended(proc.pid, timeout)
    finally:
        _end_group(proc)
    if not ended:
        return False, f"{argv[0]} did not finish within {timeout:g}s"
    return proc.returncode == 0, f"{argv[0]} exited with code {proc.returncode}"


def _ended(pid, timeout):
    """Whether child ``pid`` exited within ``timeout`` seconds; it is left unreaped (WNOWAIT), so its
    pid stays its group's id until :func:`_end_group`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        eventlet.sleep(WAIT_STEP)


def _end_group(proc):
    """SIGKILL the check's process group (its leader not yet reaped, so the id cannot be another's),
    reap the leader, then the members that were handed to the agent (its subreaper), for a moment."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    deadline = time.monotonic() + REAP_WAIT
    while True:
        try:
            pid, _ = os.waitpid(-proc.pid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            eventlet.sleep(WAIT_STEP)
