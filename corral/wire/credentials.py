"""Each node its own credential: join tokens, and the key pair a node holds instead of the cluster key.

A **join token** (``corral node join-token``) is one line a node is started with once::

    cj1.<id: 16 hex>.<secret: 32 hex>.<the reconcilers' CurveZMQ public key: 64 hex>

The store keeps its id and the sha256 of its secret only, and spends it the first time it
is used (:meth:`corral.store.base.Store.redeem_join_token`). The servers' public key in it
lets the node reach the encrypted bus before it holds anything else, and pins the
reconcilers: a node that joins talks only to servers holding the matching secret key.

A **node credential** is what the join gives the node, kept in ``<data dir>/credential/node.json``
(0600 in a 0700 folder): its name, its CurveZMQ key pair (made on the node: the secret key never
leaves it), the servers' public key, and its signing key. The reconcilers record the public key
for the name, authenticate every connection by it (:mod:`corral.wire.zap`) and sign what they
send to the node, and check what it sends, with the signing key
``HMAC-SHA256(cluster key, label, name, public key)``: derived, so no store holds it; bound to the
key pair, so a node that joins again gets a new one.
"""
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets

from corral import private
from corral.wire.curve import z85, z85_decode

NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")   # a host name, more or less
TOKEN_PREFIX = "cj1"
TOKEN_RE = re.compile(r"cj1\.([0-9a-f]{16})\.([0-9a-f]{32})\.([0-9a-f]{64})")
SIGN_LABEL = b"corral node signing key v1"
CREDENTIAL_DIR = "credential"
CREDENTIAL_FILE = "node.json"
MAX_CREDENTIAL_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class JoinToken:
    """A join token's parts: ``id`` and ``secret`` (hex text), ``server_public`` (z85 bytes)."""

    id: str
    secret: str
    server_public: bytes

    def text(self) -> str:
        """The one line a node is given (see the module docstring)."""
        return f"{TOKEN_PREFIX}.{self.id}.{self.secret}.{z85_decode(self.server_public).hex()}"

    def secret_sha256(self) -> str:
        """What the store keeps of the secret."""
        return secret_sha256(self.secret)


def secret_sha256(secret: str) -> str:
    """The sha256 (hex) of a join token's secret, as the store keeps it. Pure."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_join_token(server_public: bytes) -> JoinToken:
    """A fresh join token for the reconcilers whose CurveZMQ public key is ``server_public``."""
    return JoinToken(id=secrets.token_hex(8), secret=secrets.token_hex(16), server_public=server_public)


def parse_join_token(text: str) -> JoinToken:
    """The :class:`JoinToken` written as ``text``; ValueError with one sentence when it is not one. Pure."""
    m = TOKEN_RE.fullmatch((text or "").strip())
    if m is None:
        raise ValueError("the join token is not of the form cj1.<16 hex>.<32 hex>.<64 hex> "
                         "(as `corral node join-token` prints it)")
    return JoinToken(id=m.group(1), secret=m.group(2), server_public=z85(bytes.fromhex(m.group(3))))


def name_refusal(name) -> str | None:
    """Why ``name`` cannot be a node that joins with its own key (one sentence), else None. Pure."""
    if not isinstance(name, str) or NODE_NAME.fullmatch(name) is None:
        return (f"node name {name!r} is not one: letters, digits, '.', '_' and '-', at most 253, "
                "beginning and ending with a letter or digit")
    return None


def node_sign_key(cluster_key: bytes, name: str, public_key: bytes) -> bytes:
    """The signing key of node ``name`` holding CurveZMQ ``public_key`` (z85), derived from the cluster
    key (see the module docstring). Pure."""
    return hmac.new(cluster_key, b"\0".join((SIGN_LABEL, name.encode("utf-8"), public_key)), hashlib.sha256).digest()


@dataclasses.dataclass(frozen=True)
class NodeCredential:
    """What a node holds instead of the cluster key; keys as z85 bytes, ``sign_key`` raw bytes."""

    name: str
    public: bytes
    secret: bytes
    server_public: bytes
    sign_key: bytes

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "public": self.public.decode(), "secret": self.secret.decode(),
                           "server_public": self.server_public.decode(), "sign_key": self.sign_key.hex()},
                          sort_keys=True) + "\n"


def credential_path(data_dir) -> str:
    """Where the agent on ``data_dir`` keeps its credential."""
    return os.path.join(data_dir, CREDENTIAL_DIR, CREDENTIAL_FILE)


def save_credential(data_dir, credential: NodeCredential) -> str:
    """Write ``credential`` to :func:`credential_path` (0600 in a 0700 folder, through an ``O_EXCL``
    temporary name); returns the path."""
    path = credential_path(data_dir)
    private.tighten_dir(os.path.dirname(path))
    return private.write_private(path, credential.to_json())


def load_credential(data_dir) -> NodeCredential | None:
    """The credential kept on ``data_dir``, None when there is none; ValueError naming the file when
    it cannot be read or is not one."""
    path = credential_path(data_dir)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CREDENTIAL_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"node credential {path} cannot be read: {e.strerror or e}") from None
    try:
        doc = json.loads(raw)
        cred = NodeCredential(name=doc["name"], public=doc["public"].encode("ascii"),
                              secret=doc["secret"].encode("ascii"), server_public=doc["server_public"].encode("ascii"),
                              sign_key=bytes.fromhex(doc["sign_key"]))
        for value in (cred.public, cred.secret, cred.server_public):
            if len(z85_decode(value)) != 32:
                raise ValueError
        if not isinstance(cred.name, str) or not cred.name or len(cred.sign_key) != 32:
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        raise ValueError(f"node credential {path} is not one (remove it and join the node again)") from None
    private.tighten_file(path)
    return cred
