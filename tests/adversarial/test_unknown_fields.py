"""Unknown fields on the bus against the real agent: a peer one minor release newer may add fields
(the bus lets them in, bounded, and drops them: corral/wire/compat.py). A hostile peer with the key
tries to smuggle through them what this agent would act on if it read them: a user, a command, a
working folder, an env (LD_PRELOAD), a layer's destination, a second image. Nothing of it reaches the
instance or the agent's state; too many of them, or an oversized one, refuse the whole message; and
a known field of the wrong type is still refused with unknown ones beside it."""
import corral.green

corral.green.patch()

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

import requests  # noqa: E402

from tests.integration.test_agent_daemon import (  # noqa: E402,F401  (fixtures)
    NODE, agent, assignment, image_server, key_file, reconciler, running, wait_for)

MARKER = "/tmp/corral-smuggled-by-unknown-field"
SMUGGLE = "touch " + MARKER
SMUGGLED_ENV = {"LD_PRELOAD": "/tmp/corral-smuggled.so", "CORRAL_SMUGGLED": "1"}


def smuggling(entry):
    """``entry`` (an assign's instance) with hostile unknown fields at every level of it."""
    entry = json.loads(json.dumps(entry))
    entry.update(user="root", uid=0, command=["sh", "-c", SMUGGLE], env=SMUGGLED_ENV, cwd="/")
    entry["spec"].update(shell=True, preexec=SMUGGLE, cwd="/", user="root", envFrom=SMUGGLED_ENV)
    entry["artifact"].update(extra_layers=[{"kind": "code", "url": "http://127.0.0.1:9/x.tar", "dest": "/"}])
    for layer in entry["artifact"]["layers"]:
        layer.update(dest="/", extract_to="/etc", mode=0o4755)
    return entry


def identity(pid):
    """The Uid: and Gid: lines of process ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        return [line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))]


def refused(reconciler):
    return (reconciler.latest() or {"node": {}})["node"].get("rejected_messages", {}).get("schema", 0)


def test_unknown_fields_smuggle_nothing_into_an_instance_or_the_agents_state(agent, reconciler, image_server):
    subprocess.run(["rm", "-f", MARKER], check=True)
    handle = agent()
    plain = assignment("hello-env-1", image_server, ["python", "envserver.py", "${PORT}"], env={"GREETING": "hi"})
    twin = dict(json.loads(json.dumps(plain)), id="hello-env-2")   # the same, without the unknown fields
    body = {"node": NODE, "instances": [smuggling(plain), twin], "future": {"rollout": "fast"}}
    assert reconciler.server.send(NODE.encode(), "assign", body, 1)
    inst, other = (wait_for(f"{iid} running", lambda iid=iid: running(reconciler, iid))
                   for iid in ("hello-env-1", "hello-env-2"))
    seen, plain_seen = (requests.get(f"http://127.0.0.1:{i['port']}/", timeout=5).json() for i in (inst, other))
    assert seen["env"].get("GREETING") == "hi"
    assert not set(SMUGGLED_ENV) & set(seen["env"]), "an unknown field's env reached the instance"
    assert seen["cwd"] == plain_seen["cwd"] != "/", "an unknown field's cwd was used"
    assert identity(inst["pid"]) == identity(other["pid"]), "an unknown field changed whom the instance runs as"
    assert not os.path.exists(MARKER), "an unknown field's command ran"
    state = (handle.data_dir / "instances.json").read_text()
    for word in ("smuggled", "preexec", "extract_to", "extra_layers", "envFrom", '"uid"', "shell"):
        assert word not in state, f"{word} was kept in the agent's state"
    assert refused(reconciler) == 0, "a newer peer's fields must not refuse its message"


def test_too_many_or_oversized_unknown_fields_refuse_the_message_and_a_wrong_type_still_does(
        agent, reconciler, image_server):
    agent()
    wait_for("a first report", reconciler.latest)
    plain = assignment("hello-web-1", image_server, ["python", "-m", "http.server", "$PORT"])
    flood = dict(plain, **{f"f{i}": i for i in range(40)})
    big = dict(plain, future="x" * 100_000)
    wrong = dict(smuggling(plain), restarts="many")
    wrong["spec"] = dict(wrong["spec"], port="yes")   # a known field, of the wrong type
    for entry in (flood, big, wrong):
        assert reconciler.server.send(NODE.encode(), "assign", {"node": NODE, "instances": [entry]}, 1)
    wait_for("three refusals counted", lambda: refused(reconciler) >= 3)
    assert reconciler.latest()["instances"] == [], "a refused assign was acted on"
