"""What a node has: cpu, memory and disk, read from this machine."""
import os


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
