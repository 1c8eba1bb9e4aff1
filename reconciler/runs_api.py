"""API routes of runs (added to :class:`reconciler.api.Api`).

Routes::

    GET    /v1/runs[?app=NAME]              runs, oldest first (`corral get runs`)
    GET    /v1/runs/ID                      one run
    POST   /v1/apps/NAME/trigger            {"process": P}: a run of P now, under its concurrency
    POST   /v1/apps/NAME/runs               {"command": [...], "process": P?, "attach": bool}: a one-off (`corral run`)
    POST   /v1/runs/ID/exit                 {"exitCode": N}: an attached run's command ended (`corral run`)

A trigger or a one-off is recorded as a ``requested`` run with its audit
event, in one transaction; the leader places it (reconciler/runplan.py).
Any reconciler answers: none of these needs the lease.
"""
import secrets

from corral import names
from corral.store.base import RunRecord
from reconciler.actor import actor
from reconciler.httpio import HttpError, json_body
from reconciler.views import iso

MAX_ARGS = 256
MAX_ARG = 8192


def run_json(r):
    """One run as `get runs -o json` shows it. Pure."""
    duration = None
    if r.started_at is not None and r.finished_at is not None:
        duration = round(r.finished_at - r.started_at, 3)
    return {"id": r.id, "app": r.app, "process": r.process, "kind": r.kind, "slot": iso(r.slot),
            "state": r.state, "node": r.node, "exitCode": r.exit_code, "duration": duration,
            "command": r.command, "message": r.message, "created_at": iso(r.created_at),
            "started_at": iso(r.started_at), "finished_at": iso(r.finished_at), "actor": r.actor}


class RunRoutes:
    """Handlers of runs. ``kick(*apps)`` wakes the leader's loop."""

    def __init__(self, store, kick):
        self.store = store
        self.kick = kick

    def routes(self):
        """``(method, pattern, handler, needs_auth)`` entries for the API's route table."""
        return [
            ("GET", r"/v1/runs", self.list_runs, True),
            ("GET", r"/v1/runs/(?P<run_id>[^/]+)", self.get_run, True),
            ("POST", r"/v1/apps/(?P<name>[^/]+)/trigger", self.trigger, True),
            ("POST", r"/v1/apps/(?P<name>[^/]+)/runs", self.one_off, True),
            ("POST", r"/v1/runs/(?P<run_id>[^/]+)/exit", self.exit, True),
        ]

    def list_runs(self, environ, query):
        return 200, [run_json(r) for r in self.store.list_runs(app=query.get("app") or None)]

    def get_run(self, environ, query, run_id):
        found = self.store.list_runs(run_id=run_id)
        if not found:
            raise HttpError(404, f"run {run_id!r} not found")
        return 200, run_json(found[0])

    def _process(self, name, process, scheduled_only):
        """The app's record and ``process`` (its first process when None), or a 4xx sentence."""
        rec = self.store.get_app(name)
        if rec is None:
            raise HttpError(404, f"app {name!r} not found")
        if rec.deleting:
            raise HttpError(409, f"app {name!r} is being deleted")
        procs = rec.spec["processes"]
        process = process if process is not None else sorted(procs)[0]
        if not isinstance(process, str) or process not in procs:
            raise HttpError(404, f"app {name!r} has no process {process!r} (it has {', '.join(sorted(procs))})")
        if scheduled_only and "schedule" not in procs[process]:
            raise HttpError(400, f"process {process!r} of app {name!r} has no schedule: trigger starts a "
                                       f"scheduled process (for anything else, corral run)")
        return rec, process

    def _request(self, environ, rec, process, kind, command, what):
        run = RunRecord(id=f"{rec.name}-{process}-{secrets.token_hex(4)}", app=rec.name, process=process,
                        slot=None, kind=kind, state="requested", command=command, actor=actor(environ))
        bad = names.bad_instance_id(run.id)
        if bad:
            raise HttpError(400, bad)
        saved = self.store.request_run(run, ("app", rec.name, "RunRequested", f"run {run.id}: {what}",
                                             actor(environ)))
        self.kick(rec.name)
        return 201, run_json(saved)

    def trigger(self, environ, query, name):
        body = json_body(environ)
        rec, process = self._process(name, body.get("process"), scheduled_only=True)
        return self._request(environ, rec, process, "trigger", None, f"{process} triggered by hand")

    def one_off(self, environ, query, name):
        body = json_body(environ)
        command = body.get("command")
        if (not isinstance(command, list) or not command or len(command) > MAX_ARGS
                or not all(isinstance(a, str) and len(a) <= MAX_ARG and "\0" not in a for a in command)):
            raise HttpError(400, f"command must be a list of 1 to {MAX_ARGS} strings (each at most "
                                       f"{MAX_ARG} characters, no NUL)")
        rec, process = self._process(name, body.get("process"), scheduled_only=False)
        shown = " ".join(command)
        attached = body.get("attach") is True
        return self._request(environ, rec, process, "attached" if attached else "oneoff", command,
                             f"one-off in {process}'s env{' (attached)' if attached else ''}: {shown[:200]}")

    def exit(self, environ, query, run_id):
        code = json_body(environ).get("exitCode")
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
            raise HttpError(400, "exitCode must be a whole number from 0 to 255")
        if not self.store.report_exit(run_id, code):
            raise HttpError(409, f"run {run_id!r} is not an attached run that is still running")
        found = self.store.list_runs(run_id=run_id)
        self.kick(*(r.app for r in found))
        return 200, run_json(found[0])
