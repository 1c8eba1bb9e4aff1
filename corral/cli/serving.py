"""Whether an app that was just applied serves, and if not, why: what `corral up --apply` says.

A newcomer who runs ``./up`` must learn the outcome without reading tables:
where the example serves, or the one sentence that says why it does not (a
failed build, an instance that cannot run, one that keeps exiting, with its
last line of output). :func:`judge` decides from the API's JSON (pure);
:class:`Watch` asks the API and prints each new finding once, while ``up``
keeps the cluster running for inspection whatever the outcome.
"""
import dataclasses
import sys

from corral.cli.client import ClientError

CRASH_LOOP = 3   # restarts after which an instance that is not ready counts as failing


@dataclasses.dataclass(frozen=True)
class Outcome:
    """``kind`` is ``"serving"``, ``"failed"``, ``"building"`` (a phase to show) or ``"waiting"``;
    ``text`` one sentence for the user;
    ``instance`` the id whose output would say more (a failing instance), else None."""

    kind: str
    text: str
    instance: str = None

    @property
    def key(self):
        """What makes two outcomes the same news: a failing instance is news once, however its
        restart count and backoff change; anything else when its sentence changes."""
        return (self.kind, self.instance) if self.kind == "failed" and self.instance else (self.kind, self.text)


def judge(app, instances, build, generation):
    """The :class:`Outcome` of app JSON ``app`` (``get app -o json``), its ``instances`` and its
    latest ``build`` (or None), for the apply that made ``generation``. Pure."""
    name = app["name"]
    current = app.get("observedGeneration", 0) >= generation
    conds = {c["type"]: c for c in app.get("conditions", [])}
    if current and conds.get("Built", {}).get("status") == "False":
        return Outcome("failed", f"app/{name}: the build failed: {conds['Built'].get('message')}")
    progressing = conds.get("Progressing", {})
    if current and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Outcome("failed", f"app/{name}: the rollout failed: {progressing.get('message')}")
    mine = [i for i in instances if i.get("app") == name and i.get("desired", True)]
    for inst in mine:
        if inst.get("state") == "failed":
            return Outcome("failed", f"app/{name}: instance {inst['id']} cannot run: {inst.get('message')}",
                           inst["id"])
        if not inst.get("ready") and (inst.get("restarts") or 0) >= CRASH_LOOP:
            return Outcome("failed", f"app/{name}: instance {inst['id']} keeps exiting "
                                     f"({inst.get('restarts')} restarts; {inst.get('message')})", inst["id"])
    if current and progressing.get("status") == "True" and progressing.get("reason") == "Complete":
        ready = [i for i in mine if i.get("ready")]
        where = " ".join(f"http://{i['address']}:{i['port']}/" for i in ready if i.get("port"))
        return Outcome("serving", f"app/{name} is serving: {app.get('ready')} of {app.get('desired')} "
                                  f"instances ready" + (f" at {where}" if where else ""))
    if build and build.get("state") == "building" and build.get("progress"):
        return Outcome("building", f"app/{name} build {build['id']}: {build['progress']}")
    return Outcome("waiting", f"app/{name}: waiting")


class Watch:
    """The apps one apply made, looked at until each serves; every new outcome is printed once.

    A failure does not end the watch: the user may fix the cause and apply
    again, and the app may yet serve (an instance's backoff ends, a node joins).
    """

    def __init__(self, client, results, out=sys.stdout, err=sys.stderr):
        self.client = client
        self.pending = {r["name"]: r["generation"] for r in results if r.get("kind", "App") == "App"}
        self.said = {}
        self.out, self.err = out, err

    @property
    def done(self):
        """Whether every app watched has served."""
        return not self.pending

    def look(self):
        """Ask the API once about every app still pending and print what changed."""
        for name, generation in list(self.pending.items()):
            try:
                outcome = self._outcome(name, generation)
            except ClientError:
                continue   # a reconciler restarting: look again later
            if self.said.get(name) == outcome.key:
                continue
            self.said[name] = outcome.key
            if outcome.kind == "serving":
                del self.pending[name]
                print(outcome.text, file=self.out, flush=True)
            elif outcome.kind == "failed":
                print(f"corral up: {outcome.text}", file=self.err, flush=True)
                lines = last_output(self.client, outcome.instance) if outcome.instance else []
                for line in lines:
                    print(f"corral up:   {outcome.instance} | {line}", file=self.err, flush=True)
                print(f"corral up: the cluster stays up for a look: corral describe app {name}; "
                      f"corral logs {name}", file=self.err, flush=True)
            elif outcome.kind == "building":
                print(outcome.text, file=self.err, flush=True)

    def _outcome(self, name, generation):
        app = self.client.get(f"/v1/apps/{name}")
        instances = self.client.get("/v1/instances", params={"app": name})
        builds = self.client.get(f"/v1/builds?app={name}")
        return judge(app, instances, builds[0] if builds else None, generation)


def last_output(client, instance, lines=3):
    """The last ``lines`` lines the app wrote in its instance's latest runs (corral's own lines
    about starts and exits left out), or [] when they cannot be had."""
    from corral.cli.stream import items, open_stream
    from nodeagent.logs import parse_line
    out = []
    try:
        _, response = open_stream(client, "GET", f"/v1/instances/{instance}/logs",
                                  params={"follow": "0", "tail": str(lines * 4)})
        with response:
            for item in items(response):
                out += [line.text for line in map(parse_line, item.get("data", "").split("\n")[:-1])
                        if line.stream != "sys"]
                if item.get("caught_up") or "end" in item:
                    break
    except ClientError:
        return []
    return out[-lines:]
