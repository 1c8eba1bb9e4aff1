"""The layer URLs the leader puts in one node's assignment: signed for that node, on every live builder.

A build records its layers with the URL of the builder that made them; the
leader gives each node, in its own assignment only, each layer's URL signed
for it (:mod:`corral.layer_access`), first on that builder when it is alive,
then on every other builder heard from within :data:`BUILDER_SILENT`
seconds (any builder that has the layer serves it: one sharing the images
folder, or one that built it too), so an agent whose first builder is down
tries the next. An agent of a release before :data:`MIRRORS_SINCE` refuses a
field it does not know: it is given the first URL alone, as it always was.
"""
import dataclasses

from corral import layer_access
from corral.layer_keyring import LayerKeyRing
from corral.store import StoreError

#: A builder not heard from for this long is offered only after the others (it may be back).
BUILDER_SILENT = 60.0
#: The first release whose agents read a layer's ``urls`` (and try them in order).
MIRRORS_SINCE = "0.2"


@dataclasses.dataclass
class Signer:
    """Signs artifacts for nodes during one push: one key, one expiry, one read of the builders."""

    key: bytes
    exp: int
    builders: list
    generation: int = 1
    _bases: dict = dataclasses.field(default_factory=dict)     # recorded base -> bases to offer
    _done: dict = dataclasses.field(default_factory=dict)      # (node, image, mirrors) -> artifact

    def artifact(self, node, image, artifact, mirrors):
        """``artifact`` (``{"layers": [...]}`` as the build recorded it) signed for ``node``; the
        same dict for every instance of one image on one node."""
        done = self._done.get((node, image, mirrors))
        if done is None:
            done = self._done[(node, image, mirrors)] = {"layers": [
                layer_access.signed_layer(layer, node, self.exp, self.key, self._offered(layer), mirrors)
                for layer in artifact["layers"]]}
        return done

    def _offered(self, layer):
        recorded = layer_access.base_of(layer.get("url"))
        if recorded not in self._bases:
            self._bases[recorded] = layer_access.layer_bases(recorded, self.builders, BUILDER_SILENT)
        return self._bases[recorded]


class LayerUrls:
    """Makes a :class:`Signer` for each push, from the store's layer key and builders."""

    def __init__(self, store, ttl, keys=None):
        self.store = store
        self.ttl = ttl
        self.keys = keys or LayerKeyRing(store)

    def signer(self, now):
        """A Signer whose URLs expire at :func:`corral.layer_access.expiry` of ``now``. StoreError when
        no layer key can be read; without the builders' list, each layer's recorded builder alone."""
        try:
            builders = [(b.name, b.url, b.age) for b in self.store.list_builders()]
        except StoreError:
            builders = []
        return Signer(key=self.keys.signing(), exp=layer_access.expiry(now, self.ttl), builders=builders,
                      generation=self.keys.generation())

    def renewal_due(self, sent, now):
        """Whether the layer URLs ``sent`` (``(expiry, key generation)``, or None) are to be sent again,
        signed anew: half their time or less left, or signed with a key older than the newest (after
        a rotation, so that a second one does not leave any node holding URLs no builder accepts)."""
        if sent is None:
            return False
        return layer_access.renewal_due(sent[0], now, self.ttl) or sent[1] != self.keys.generation()
