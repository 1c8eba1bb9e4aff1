"""What a node has: cpu, memory, disk and load read from this machine, and its labels."""
import os
import re

import yaml

LABEL_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,251}[A-Za-z0-9])?$")


def labels_from_file(path):
    """The labels in the YAML mapping at ``path`` (key: value, both strings).

    Raises ValueError naming the file and the key when it is not such a mapping.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"labels file {path} cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"labels file {path} must be a mapping of label to value")
    out = {}
    for key, value in data.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            raise ValueError(f"labels file {path}: {key!r} is not a label name")
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"labels file {path}: the value of {key!r} must be a string")
        out[key] = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def cpu_count():
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_bytes(meminfo="/proc/meminfo"):
    """Total memory in bytes from ``MemTotal`` in ``meminfo``; 0 when it cannot be read."""
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    value, unit = line.split()[1:3]
                    return int(value) * (1024 if unit.lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def disk_free_bytes(path):
    """Bytes free to an unprivileged user on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def disk_total_bytes(path):
    """Size in bytes of the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def load():
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def capacity(data_dir):
    """The ``capacity`` object of a report: ``{"cpu", "memory", "disk"}``."""
    return {"cpu": cpu_count(), "memory": memory_bytes(), "disk": disk_free_bytes(data_dir)}
