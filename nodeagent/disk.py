"""Disk pressure of a node (pure: figures in, decisions out).

The threshold is 10% of the filesystem or 2 GiB, whichever is smaller
(Kubernetes' eviction default is a flat 10%; on a 4 TB disk that keeps 400 GB
idle, hence the cap). Worked example: a 50 GiB disk keeps 2 GiB free (10% is
5 GiB); a 8 GiB disk keeps 0.8 GiB.
"""

FRACTION = 0.10
CAP = 2 * 1024 ** 3


def threshold(total):
    """Bytes that must stay free on a filesystem of ``total`` bytes."""
    return min(int(total * FRACTION), CAP)


def under_pressure(free, total):
    """Whether ``free`` bytes on a filesystem of ``total`` bytes is below the threshold."""
    return free < threshold(total)


def room_for(free, total, size):
    """Whether ``size`` more bytes can be written and still leave the threshold free."""
    return free - size >= threshold(total)


def evictions(images, layer_sizes, keep, free, total, need):
    """Which unused images to delete, least recently used first, and which of their layers go with
    them, so that ``need`` more bytes leave the threshold free (pure).

    ``images`` are the candidates, ``(image id, last used, layer keys)``;
    ``keep`` the layer keys that stay whatever happens (used by an image that
    is not a candidate); ``layer_sizes`` the bytes each layer frees. Returns
    ``(image ids, layer keys, fits)``; nothing is evicted when even all of
    them would not make room (the cache is not thrown away for nothing).
    Worked example: 100 GiB disk (threshold 2 GiB), 2.5 GiB free, need 1 GiB:
    images are deleted oldest first until 3 GiB are free.
    """
    if room_for(free, total, need):
        return [], [], True
    refs = {}
    for _, _, layers in images:
        for layer in layers:
            refs[layer] = refs.get(layer, 0) + 1
    gone_images, gone_layers = [], []
    for image_id, _, layers in sorted(images, key=lambda i: (i[1], i[0])):
        gone_images.append(image_id)
        for layer in layers:
            refs[layer] -= 1
            if refs[layer] == 0 and layer not in keep:
                gone_layers.append(layer)
                free += layer_sizes.get(layer, 0)
        if room_for(free, total, need):
            return gone_images, gone_layers, True
    return [], [], False
