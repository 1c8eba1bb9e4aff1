"""Running one health check against a live instance (the I/O side of :mod:`nodeagent.health`).

A tcp check connects and closes with a reset (``SO_LINGER`` 0), as Kubernetes'
probes do since kubernetes/kubernetes#115143: a check every second of
hundreds of instances otherwise leaves thousands of sockets in TIME_WAIT and
costs the agent a FIN exchange per check. A numeric address is connected to
as it is, without a (green) name lookup per check.
"""
import functools
import socket
import struct
import subprocess

import requests


def probe(check, address, port, env, cwd):
    """Run ``check`` once; returns ``(ok, detail)``, ``detail`` one phrase of what was seen."""
    if check.kind == "exec":
        return _exec(check.target, env, cwd, check.timeout)
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
            sock = socket.create_connection((address, port), timeout=timeout)
        else:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
        with sock:
            if family is not None:
                sock.connect((address, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            return True, f"connected to {address}:{port}"
    except OSError as e:
        return False, f"connect to {address}:{port}: {e.strerror or e}"


def _exec(argv, env, cwd, timeout):
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]} did not finish within {timeout:g}s"
    except OSError as e:
        return False, f"{argv[0]} could not be run ({e.strerror or e})"
    return done.returncode == 0, f"{argv[0]} exited with code {done.returncode}"
