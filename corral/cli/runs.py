"""``corral trigger APP PROCESS`` and ``corral run APP -- COMMAND...``: runs asked for by hand.

``trigger`` starts a scheduled process now, under its concurrency policy.
``run`` starts a one-off in the app's current image and env. With
``--detach`` both print the run's id and return; otherwise they wait for the
run, print its output as it comes (``corral logs --run``) and exit with its
exit code. A one-off with a terminal is attached to it: the run holds the
app's environment on its node and the command runs there through the same
stream as ``corral exec`` (a pty, every key, the window size, the exit code).

Only ``add_parser`` runs for every ``corral`` command.
"""
import sys
import time

from corral.cli.client import ClientError
from corral.cli.verbs import add_verb

POLL = 0.5        # seconds between looks at a run's state while waiting
LOST = 255        # exit status when the run's outcome is unknown


def add_parser(sub):
    """Register ``corral trigger`` and ``corral run``."""
    t = add_verb(sub, "trigger", "start a scheduled process now, under its concurrency policy",
                 ["corral trigger hello report", "corral trigger hello report --detach"],
                 description="Start a run of a scheduled process now, outside its schedule and under its "
                             "concurrency policy (forbid skips it while a run is active). Waits for the run and "
                             "exits with its exit code, or with --detach prints its id. Audited as an event.")
    t.add_argument("app", help="the app's name")
    t.add_argument("process", help="the scheduled process")
    t.add_argument("--detach", "-d", action="store_true", help="print the run's id and return at once")
    r = add_verb(sub, "run", "run a one-off command in the app's current image and env, on a node",
                 ["corral run hello -- python manage.py migrate", "corral run hello --detach -- python job.py"],
                 description="Run a one-off command in the app's current image and environment (those of its first "
                             "process, or --process), placed on a node like an instance. Attached to the terminal "
                             "(a pty when stdin is one) with the command's exit code passed through, or with "
                             "--detach the run's id is printed (its output: corral logs APP --run ID). "
                             "Audited as an event.")
    r.add_argument("app", help="the app's name")
    r.add_argument("--process", "-p", help="whose environment and resources (default: the app's first process)")
    r.add_argument("--detach", "-d", action="store_true", help="print the run's id and return at once")
    r.add_argument("argv", nargs="+", metavar="-- CMD [ARG]...", help="the command and its arguments")


def handler_for(args):
    """The handler of ``trigger`` and ``run``, else None."""
    return {"trigger": trigger, "run": run}.get(args.command)


def _request(client, path, body):
    """POST ``body`` to ``path`` saying who asks (for the audit event); the API's answer."""
    from corral.cli.exec import actor
    client.headers = dict(client.headers, **{"X-Corral-Actor": actor()})
    return client.request("POST", path, json=body)[1]


def trigger(args, client):
    """``corral trigger``: the run's exit code (0 with --detach)."""
    run_ = _request(client, f"/v1/apps/{args.app}/trigger", {"process": args.process})
    return _detached_or_waited(args, client, run_)


def run(args, client):
    """``corral run``: the command's exit code (0 with --detach)."""
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ClientError("run needs a command after --")
    body = {"command": argv, "process": args.process, "attach": not args.detach}
    run_ = _request(client, f"/v1/apps/{args.app}/runs", body)
    if args.detach:
        print(run_["id"])
        return 0
    return attached(client, args.app, run_["id"], argv)


def attached(client, app, run_id, argv):
    """Run ``argv`` in the environment the attached run ``run_id`` holds, through ``corral
    exec``'s stream (a pty when stdin is a terminal), report its exit code so the leader ends
    the run with it, and return it (255 when the connection was lost)."""
    import argparse
    from corral.cli import exec as exec_command
    started = wait_for_state(client, run_id, {"running", "succeeded", "failed", "skipped"})
    if started["state"] != "running":
        return outcome(started)
    code = exec_command.LOST
    try:
        code = exec_command.run(argparse.Namespace(app=app, process=None, instance=run_id, argv=argv), client)
    finally:
        try:
            client.request("POST", f"/v1/runs/{run_id}/exit", json={"exitCode": code}, idempotent=True)
        except ClientError as e:
            print(f"corral: the end of run {run_id} could not be reported: {e}", file=sys.stderr)
    return code


def _detached_or_waited(args, client, run_):
    if args.detach:
        print(run_["id"])
        return 0
    print(f"corral: run {run_['id']} requested", file=sys.stderr, flush=True)
    return wait_and_follow(client, args.app, run_["id"])


def wait_for_state(client, run_id, states, timeout=None, clock=time.monotonic):
    """Poll the run until its state is one of ``states``; returns the run."""
    deadline = None if timeout is None else clock() + timeout
    while True:
        got = client.get(f"/v1/runs/{run_id}")
        if got["state"] in states:
            return got
        if deadline is not None and clock() > deadline:
            raise ClientError(f"run {run_id} is still {got['state']} after {timeout:g}s")
        time.sleep(POLL)


def outcome(run_):
    """The exit status a finished run gives the shell, saying on stderr how it ended."""
    code = run_.get("exitCode")
    took = f" after {run_['duration']:.1f}s" if run_.get("duration") is not None else ""
    print(f"corral: run {run_['id']} {run_['state']}{took}" + (f": {run_['message']}" if run_.get("message") else ""),
          file=sys.stderr, flush=True)
    if run_["state"] == "succeeded":
        return 0
    return code if isinstance(code, int) and 0 < code < 256 else 1


def wait_and_follow(client, app, run_id):
    """Wait for the run to start, print its output until it ends, and return its exit status."""
    import argparse
    from corral.cli import logs
    started = wait_for_state(client, run_id, {"pending", "running", "succeeded", "failed", "skipped"})
    if started["state"] == "skipped":
        return outcome(started)
    wait_for_state(client, run_id, {"running", "succeeded", "failed"})
    follow = argparse.Namespace(app=app, process=None, instance=None, run=run_id, tail=None, since=None,
                                follow=True, timestamps=False, previous=False)
    try:
        logs.run(follow, client)
    except ClientError as e:
        print(f"corral: the run's output could not be read: {e}", file=sys.stderr)
    return outcome(wait_for_state(client, run_id, {"succeeded", "failed"}))
