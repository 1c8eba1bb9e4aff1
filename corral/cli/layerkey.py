"""`corral rotate-layer-key`: a new key for the layer URLs, written straight into the store.

The leader signs each node's layer URLs with the store's newest layer key and
the builders accept the newest two (corral/layer_access.py), so a rotation
stops nothing: the leader takes the new key within a minute and sends every
node its assignment again with URLs signed with it, and the URLs signed just
before stay good until they expire. Rotate at most once an hour
(``layer_url_ttl``): a second rotation leaves the first one's key behind.
"""
import sys


def run(args):
    """Add a layer key to the store (``--store``, else ``$CORRAL_STORE``); print its generation."""
    from corral.store import StoreError, open_store
    from corral.wire.keys import store_dsn
    try:
        store = open_store(store_dsn(args.store))
        try:
            generation = store.rotate_layer_key()
        finally:
            store.close()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    before = (f"URLs signed with generation {generation - 1} stay good until they expire" if generation > 1
              else "it is the store's first")
    print(f"layer key generation {generation} made: the leader signs with it within a minute, and {before}")
    return 0
