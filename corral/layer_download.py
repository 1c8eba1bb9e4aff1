"""One verified download of a layer archive, shared by the agent (nodeagent/pull.py) and the builders
copying each other's layers (builder/replicas.py): the same checks wherever a layer is fetched."""
import hashlib
import os
import re
import time

import requests

CHUNK = 1 << 20
TIMEOUT = (10, 60)   # connect, read: seconds


class DownloadFailed(Exception):
    """One URL did not give the archive; the message says why, in words that follow the layer's name."""


def shown(url):
    """``url`` as an error or a marker shows it: without its query (a credential for the layer)."""
    return (url or "").split("?", 1)[0]


def download(url, fd, sha256, size=None, timeout=TIMEOUT):
    """Write the body of ``url`` to ``fd``, hashed on the way; return its length once its sha256 is
    ``sha256``. A body longer than ``size`` (when an int) is cut off there. DownloadFailed on an HTTP
    error, a broken or over-long body, or another digest; no message holds the URL's query."""
    digest, length = hashlib.sha256(), 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise DownloadFailed(f"GET {shown(url)} answered HTTP {resp.status_code}")
            for chunk in resp.iter_content(CHUNK):
                length += len(chunk)
                if type(size) is int and length > size:
                    raise DownloadFailed(f"the archive from {shown(url)} is longer than the {size} bytes "
                                         f"the assignment says")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                time.sleep(0)   # a turn for other green threads: a body on loopback never makes recv wait
    except requests.RequestException as e:
        raise DownloadFailed(f"downloading {shown(url)} failed ({e.__class__.__name__}: "
                             f"{_without_queries(e)})") from None
    if digest.hexdigest() != sha256:
        raise DownloadFailed(f"the archive from {shown(url)} has sha256 {digest.hexdigest()}, expected {sha256}")
    return length


def _without_queries(error):
    """An exception's text with every URL's query cut off (requests names the URL it failed on)."""
    return re.sub(r"\?[^\s'\")]*", "", str(error))
