"""Memory and process-count limits through cgroups: which hierarchy to use and what to write (pure: no I/O).

Every instance also gets a ``pids.max`` (:data:`DEFAULT_PIDS_MAX` unless
the agent is told another), so that a fork bomb fails inside its own cgroup
instead of filling the node's process table: v2 where a ``cgroup2`` mount
offers ``pids`` (the memory cgroup's own folder when both are there), else
the v1 ``pids`` hierarchy (``/sys/fs/cgroup/pids``), see :func:`pids_layout`.

The agent puts each instance with a memory request into a cgroup of its own,
``<mount>/corral/<instance id>``, whose hard limit is the request. The
decision is taken from what the node offers, read by :mod:`nodeagent.cgroupfs`:

- cgroup v2 when a ``cgroup2`` mount offers the ``memory`` controller (a
  unified host at ``/sys/fs/cgroup``, or a hybrid host's
  ``/sys/fs/cgroup/unified`` when memory is there: usually it holds only
  ``hugetlb`` then);
- else cgroup v1 when a ``cgroup`` mount carries the ``memory`` controller
  (``/sys/fs/cgroup/memory``);
- else no limits, and the node says so (``MemoryLimitsNotEnforced``).

Only root may create cgroups at the top of a hierarchy: a non-root agent
enforces nothing and says so too.
"""
import dataclasses
import re

PARENT = "corral"   # the folder under the mount that holds one cgroup per instance
DEFAULT_PIDS_MAX = 4096   # processes and threads an instance may have at once

_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where instance cgroups live: ``kind`` is ``"v2"`` or ``"v1"``, ``mount`` the hierarchy's mount point."""

    kind: str
    mount: str

    @property
    def parent(self):
        """The folder of corral's instance cgroups."""
        return f"{self.mount.rstrip('/')}/{PARENT}"

    @property
    def events_file(self):
        """The file whose ``oom_kill N`` line counts the OOM kills of a cgroup."""
        return "memory.events" if self.kind == "v2" else "memory.oom_control"


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """No limits on this node, and why (one sentence, for the agent's log)."""

    reason: str


def parse_mounts(text):
    """``[(mount point, fstype, options)]`` of a ``/proc/self/mounts`` text; octal escapes
    (``\\040`` for a space) decoded."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        out.append((point, fields[2], fields[3].split(",")))
    return out


def cgroup2_mounts(mounts_text):
    """The mount points of every ``cgroup2`` hierarchy, for the caller to read their ``cgroup.controllers``."""
    return [point for point, fstype, _ in parse_mounts(mounts_text) if fstype == "cgroup2"]


def memory_layout(mounts_text, controllers, is_root):
    """Decide where memory limits go: a :class:`Layout`, or :class:`Unsupported` with the reason.

    ``controllers`` maps a cgroup2 mount point to the text of its
    ``cgroup.controllers`` (None when unreadable). v2 is preferred when it
    offers memory; ``/sys/fs/cgroup`` first when several do. A purely
    computational function with no side-effects.
    """
    return controller_layout("memory", mounts_text, controllers, is_root)


def pids_layout(mounts_text, controllers, is_root):
    """Decide where process-count limits go: a :class:`Layout`, or :class:`Unsupported` with the reason.
    Like :func:`memory_layout`, for the ``pids`` controller (pure)."""
    return controller_layout("pids", mounts_text, controllers, is_root)


def controller_layout(controller, mounts_text, controllers, is_root):
    """Where the limits of ``controller`` (``memory``, ``pids``) go: cgroup v2 when a cgroup2 mount
    offers it (``/sys/fs/cgroup`` first), else its v1 hierarchy; else :class:`Unsupported` (pure)."""
    if not is_root:
        return Unsupported("the agent does not run as root, so it cannot create cgroups")
    mounts = parse_mounts(mounts_text)
    v2 = sorted((point for point, fstype, _ in mounts
                 if fstype == "cgroup2" and controller in (controllers.get(point) or "").split()),
                key=lambda p: (p != "/sys/fs/cgroup", p))
    if v2:
        return Layout("v2", v2[0])
    v1 = [point for point, fstype, options in mounts if fstype == "cgroup" and controller in options]
    if v1:
        return Layout("v1", v1[0])
    return Unsupported(f"no cgroup {controller} controller is mounted "
                       f"(neither cgroup2 with {controller} nor the v1 {controller} hierarchy)")


def pids_max(value):
    """The process-count limit asked for by ``value`` (a setting's text, None for the default) (pure):
    :data:`DEFAULT_PIDS_MAX` for None or "", else a whole number of at least 1; ValueError otherwise."""
    if value is None or str(value).strip() == "":
        return DEFAULT_PIDS_MAX
    n = int(str(value).strip())
    if n < 1:
        raise ValueError(f"a pids limit must be at least 1, not {n}")
    return n


def pids_writes(limit):
    """``[(file name, value)]`` that cap an instance's cgroup at ``limit`` processes (v1 and v2 alike)."""
    return [("pids.max", str(int(limit)))]


def request_bytes(resources):
    """The memory request in ``resources`` (an assignment's ``spec.resources``) in bytes, 0 for none (pure).

    ValueError (one sentence) when it is not a whole number of bytes: the
    reconciler sends bytes, anything else is a bad assignment.
    """
    value = (resources or {}).get("memory") or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"the memory request {value!r} is not a whole number of bytes")
    return value


def instance_dir(layout, instance_id):
    """The cgroup folder of one instance; ValueError for an id that is not a safe folder name."""
    if not _INSTANCE_NAME.match(instance_id) or instance_id in (".", ".."):
        raise ValueError(f"instance id {instance_id!r} cannot name a cgroup folder")
    return f"{layout.parent}/{instance_id}"


def parent_writes(layout, controller="memory"):
    """``[(path, value)]`` that make the parent able to limit ``controller`` in its children, in order.

    v2 only: the controller must be enabled in the subtree of the mount's
    root and of the parent (``+memory`` or ``+pids`` into ``cgroup.subtree_control``).
    v1 needs nothing.
    """
    if layout.kind != "v2":
        return []
    return [(f"{layout.mount.rstrip('/')}/cgroup.subtree_control", f"+{controller}"),
            (f"{layout.parent}/cgroup.subtree_control", f"+{controller}")]


def limit_writes(layout, limit, present):
    """``[(file name, value)]`` that make ``limit`` bytes a hard limit, in the order they must be written.

    ``present`` is the set of file names the new cgroup has. Swap is
    counted in the limit where the node accounts it, so that the process is
    killed rather than swapped out: v2 ``memory.max`` then
    ``memory.swap.max`` = 0; v1 ``memory.limit_in_bytes`` then
    ``memory.memsw.limit_in_bytes`` (memory + swap, which must not be below the first).
    """
    limit = int(limit)
    if limit <= 0:
        raise ValueError(f"a memory limit must be a positive number of bytes, not {limit}")
    if layout.kind == "v2":
        out = [("memory.max", str(limit))]
        if "memory.swap.max" in present:
            out.append(("memory.swap.max", "0"))
        return out
    out = [("memory.limit_in_bytes", str(limit))]
    if "memory.memsw.limit_in_bytes" in present:
        out.append(("memory.memsw.limit_in_bytes", str(limit)))
    return out


def oom_kills(text):
    """The ``oom_kill`` count in a ``memory.events`` (v2) or ``memory.oom_control`` (v1) text; 0 when absent."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def memory_usage_file(layout):
    """The file of a memory cgroup that holds the bytes it charges now."""
    return "memory.current" if layout.kind == "v2" else "memory.usage_in_bytes"


def cpu_seconds(cpu_stat):
    """CPU seconds of a v2 cgroup from its ``cpu.stat`` text (``usage_usec N``); None when absent."""
    for line in (cpu_stat or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def process_usage(stat, statm, ticks_per_second, page_size):
    """``(cpu seconds, resident bytes)`` of one process from its ``/proc/PID/stat`` and ``statm`` texts
    (user + system time of it and its waited-for children); None for a text that does not parse.

    ``stat``: ``PID (comm) STATE ...``, where utime, stime, cutime, cstime are fields 14 to 17
    counted from 1; comm may hold spaces and parentheses, so fields are counted after its last ``)``.
    """
    try:
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = sum(int(f) for f in fields[11:15]) / ticks_per_second
        rss = int(statm.split()[1]) * page_size
    except (ValueError, IndexError, AttributeError):
        return None
    return cpu, rss


def format_bytes(n):
    """``n`` bytes as people write a memory request: ``64Mi``, ``1.5Gi``, ``512Ki``, ``100`` (bytes)."""
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:g}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(n)


def oom_message(limit, how):
    """The message of a run the kernel killed for going over its limit; ``how`` says how it ended."""
    return f"OOMKilled: went over its memory limit of {format_bytes(limit)} ({how})"
