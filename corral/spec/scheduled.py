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


BACKUP_ALIASES = {"daily": "@daily", "hourly": "@hourly"}


def backup_schedule(text):
    """The :func:`corral.schedule.parse` form of ``spec.backups.schedule``: ``daily`` -> ``@daily``,
    ``hourly`` -> ``@hourly``, anything else as written (a cron expression, an ``@`` alias, ``every 6h``)."""
    return BACKUP_ALIASES.get(text.strip().lower(), text)


def backups_problems(spec):
    """``[(field path, sentence)]`` of what is wrong with an app's ``backups`` (the schedule of its services'
    backups). A purely computational function."""
    backups = spec.get("backups")
    if backups is None:
        return []
    if not spec.get("services"):
        return [(("spec", "backups"), "backs up the app's services, and it has none: add spec.services or "
                                      "remove this")]
    if "schedule" in backups:
        try:
            parse(backup_schedule(backups["schedule"]))
        except ScheduleError as e:
            return [(("spec", "backups", "schedule"), str(e))]
    return []
