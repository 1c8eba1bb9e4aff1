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
