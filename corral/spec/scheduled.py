"""What a scheduled process may say, beyond its schema, and its defaults. Pure.

A process with a ``schedule`` has no instances of its own: at each slot the
leader starts one run of it (reconciler/cron.py). So ``instances`` may only
be 0, ``restart`` is ``never`` (the default) or ``on-failure``, and the run
policies (``timezone``, ``concurrency``, ``startingDeadline``,
``activeDeadline``, ``history``) mean something only beside a schedule.
"""
from corral.schedule import ScheduleError, parse, zone

RUN_FIELDS = ("timezone", "concurrency", "startingDeadline", "activeDeadline", "history")


def schedule_problems(name, process):
    """``[(field path, sentence)]`` of what is wrong with process ``name``'s schedule
    and run fields (empty when nothing is). A purely computational function."""
    where = ("spec", "processes", name)
    out = []
    if "schedule" not in process:
        out += [(where + (f,), "is only for a scheduled process: give it a schedule, or remove this")
                for f in RUN_FIELDS if f in process]
    else:
        for field, check in (("schedule", parse), ("timezone", zone)):
            try:
                if field in process:
                    check(process[field])
            except ScheduleError as e:
                out.append((where + (field,), str(e)))
        if process.get("instances", 0) != 0:
            out.append((where + ("instances",), "a scheduled process has no instances of its own: each slot "
                        "starts one run; remove instances"))
        if process.get("restart") == "always":
            out.append((where + ("restart",), "a scheduled run ends: restart is never (the default) or "
                        "on-failure"))
    if "retries" in process and process.get("restart") != "on-failure":
        out.append((where + ("retries",), "counts restarts under restart: on-failure; set that, or remove retries"))
    return out


def fill_process_defaults(process):
    """The defaults that depend on whether a process is scheduled, filled in place:
    ``restart`` (never for a scheduled process, else always), ``instances`` 0 for a
    scheduled one, ``concurrency`` allow, ``timezone`` UTC."""
    scheduled = "schedule" in process
    process.setdefault("restart", "never" if scheduled else "always")
    if scheduled:
        process["instances"] = 0
        process.setdefault("concurrency", "allow")
        process.setdefault("timezone", "UTC")
