"""Running one health check against a live instance (the I/O side of :mod:`nodeagent.health`)."""
import socket
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


def _tcp(address, port, timeout):
    try:
        with socket.create_connection((address, port), timeout=timeout):
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
