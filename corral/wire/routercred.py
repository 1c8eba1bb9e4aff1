"""A router's credential: what a router holds instead of the cluster key.

A router faces the internet; whoever breaks into one must not become the cluster. So a router
never holds the cluster key, only what following the route feeds takes:

- the **feed key**, ``HMAC-SHA256(cluster key, FEED_LABEL)``: the reconcilers sign the route feed
  with it (and nothing else), the routers check the feed with it. It opens no other door: no bus
  message to an agent or a reconciler is signed with it, and neither the cluster key nor any node's
  signing key, API token or the bus's CurveZMQ secret follows from it;
- the **feed's client key pair**, derived from the feed key: the reconcilers' feed (an XPUB, a
  CurveZMQ server under ``--bus-encryption required``) admits this one client key and no other
  (:mod:`corral.wire.zap`), so a peer that learnt the servers' public key (every join token
  carries it) still cannot read the route table;
- the servers' CurveZMQ **public key**, which pins the reconcilers.

``corral router-credential`` writes it from the cluster key (on a reconciler's host); the router
reads it from ``--credential`` (``$CORRAL_ROUTER_CREDENTIAL``, else :data:`DEFAULT_PATH`). It is one
line of JSON, kept 0600. A credential taken from a router stops working when the cluster key changes
(docs/PRODUCTION.md).
"""
import dataclasses
import hashlib
import hmac
import json
import os

from eventlet.green import zmq

from corral import private
from corral.wire.curve import server_keys, z85, z85_decode

FEED_LABEL = b"corral route feed signing key v1"
CLIENT_LABEL = b"corral route feed client key v1"
KIND = "corral router credential v1"
ENV_VAR = "CORRAL_ROUTER_CREDENTIAL"
DEFAULT_PATH = "/etc/corral/router.credential"
MAX_FILE_BYTES = 4096


def feed_key(cluster_key: bytes) -> bytes:
    """The route feed's signing key, derived from the cluster key (see the module docstring). Pure."""
    return hmac.new(cluster_key, FEED_LABEL, hashlib.sha256).digest()


def feed_client_keys(key: bytes) -> tuple[bytes, bytes]:
    """The routers' CurveZMQ ``(public, secret)`` (z85) at the feed, derived from the feed key ``key``. Pure."""
    secret = z85(hmac.new(key, CLIENT_LABEL, hashlib.sha256).digest())
    return zmq.curve_public(secret), secret


def router_key_only(cluster_key: bytes):
    """The route feed's ZAP answer (``admits(public key z85) -> bool``): the routers' client key, no other."""
    public = feed_client_keys(feed_key(cluster_key))[0]
    return lambda key: hmac.compare_digest(key, public)


@dataclasses.dataclass(frozen=True)
class RouterCredential:
    """``feed_key`` (raw bytes) and the servers' ``server_public`` (z85 bytes)."""

    feed_key: bytes
    server_public: bytes

    @classmethod
    def of_cluster(cls, cluster_key: bytes) -> "RouterCredential":
        """The credential of the cluster whose key is ``cluster_key``. Pure."""
        return cls(feed_key=feed_key(cluster_key), server_public=server_keys(cluster_key)[0])

    def client_keys(self) -> tuple[bytes, bytes]:
        """The CurveZMQ key pair this router connects to the feeds with."""
        return feed_client_keys(self.feed_key)

    def text(self) -> str:
        """The file's one line of JSON."""
        return json.dumps({"kind": KIND, "feed_key": self.feed_key.hex(),
                           "server_public": self.server_public.decode("ascii")}, sort_keys=True) + "\n"


def parse_credential(raw: bytes, path: str) -> RouterCredential:
    """The credential written as ``raw`` (the file ``path``); ValueError with one sentence naming the
    file when it is not one. Pure."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError
        cred = RouterCredential(feed_key=bytes.fromhex(doc["feed_key"]),
                                server_public=doc["server_public"].encode("ascii"))
        if len(cred.feed_key) != 32 or len(z85_decode(cred.server_public)) != 32:
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        raise ValueError(f"router credential {path} is not one (make it again with `corral router-credential`; "
                         "a cluster key is not a router credential)") from None
    return cred


def credential_path(given=None, environ=os.environ) -> str:
    """Where the router's credential is: ``given`` (``--credential``), else ``$CORRAL_ROUTER_CREDENTIAL``,
    else :data:`DEFAULT_PATH`. The variable is taken out of ``environ`` either way."""
    from_env = environ.pop(ENV_VAR, None)
    return given or from_env or DEFAULT_PATH


def load_credential(path) -> RouterCredential:
    """The credential in the file ``path``; FileNotFoundError or ValueError with one sentence naming it.
    A file that group or others may read is tightened to 0600 when this user owns it."""
    path = os.fspath(path)
    raw, _ = private.read_small(path, "router credential", MAX_FILE_BYTES, "make it on a reconciler's host with "
                                f"`corral router-credential --output {path}` and copy it here (0600)")
    cred = parse_credential(raw, path)
    try:
        private.tighten_file(path)
    except PermissionError:
        pass   # root's file, read through a group: the operator's choice
    return cred


def save_credential(path, credential: RouterCredential) -> str:
    """Write ``credential`` to ``path`` (0600, through an ``O_EXCL`` temporary name); FileExistsError
    naming it when a file is there already (a credential is never replaced by accident)."""
    path = os.fspath(path)
    if os.path.lexists(path):
        raise FileExistsError(f"{path} already exists; remove it first if you mean to replace it")
    return private.write_private(path, credential.text())
