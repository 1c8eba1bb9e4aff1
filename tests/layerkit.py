"""Layer URLs signed as the leader signs them (corral/layer_access.py), for tests that fetch layers."""
import time

from corral import layer_access


def signed(store, url, node="node-1", ttl=600, key=None):
    """``url`` (a layer URL as a build recorded it) with a credential for ``node`` made with the
    store's newest layer key (or ``key``), good for ``ttl`` seconds."""
    base = layer_access.base_of(url)
    kind, name = url[len(base) + len("/layers/"):].split("/")
    key = key if key is not None else store.layer_keys()[0][1]
    return layer_access.signed_url(base, kind, name[:-len(".tar")], node, int(time.time() + ttl), key)


def signed_layer(store, layer, node="node-1", bases=(), ttl=600):
    """An assignment's ``layer`` dict for ``node``: its URL (and ``urls`` on every base) signed."""
    key = store.layer_keys()[0][1]
    return layer_access.signed_layer(layer, node, int(time.time() + ttl), key, list(bases))
