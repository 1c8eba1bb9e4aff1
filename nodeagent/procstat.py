"""What ``/proc/<pid>/stat`` says of a process that the agent relies on: when it started.

A pid names a process only together with its start time: a pid is reused once
its process is gone, the pair never. Imported by the exec child's step
(:mod:`nodeagent.identity`) as well as the agent, so it imports nothing.
"""


def start_ticks(pid, proc_root="/proc"):
    """The start time of live process ``pid`` (clock ticks since boot), or None when it is gone or a zombie."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])
