"""Every daemon's /metrics on a `corral up` cluster: parsed with prometheus_client's own parser, and
counters that move when the thing they count happens (a build, a placement, a restart, a probe, a
rejected bus message). The alert rules of docs/monitoring.md name only metrics the daemons serve.

One cluster for the module; its app crashes whenever its trigger file appears.
"""
import os
import re
import shutil
import subprocess

import pytest
import requests
import yaml
import zmq
from prometheus_client.parser import text_string_to_metric_families

from corral.cli.client import load_config
from corral.cli.up import listen_ports
from corral.wire.curve import as_client
from corral.wire.keys import read_key
from tests.e2e.cluster import ROOT, UpCluster, wait_for

APP = """\
import http.server, os, threading, time
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
hog = b"x" * (8 << 20)   # resident memory for the cgroup to count
while True:
    if os.path.exists(os.environ["TRIGGER"]):
        os.remove(os.environ["TRIGGER"])
        raise SystemExit(3)
    time.sleep(0.1)
"""


def samples(text):
    """``{(name, frozenset(labels.items())): value}`` of an exposition, by prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found, name, **labels):
    """The sample ``name`` with exactly ``labels``, else 0.0."""
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found, name, **labels):
    """The sum of every sample ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def manifest(work, instances):
    doc = {"apiVersion": "corral/v1", "kind": "App", "metadata": {"name": "counted"},
           "spec": {"source": "./src", "env": {"TRIGGER": str(work / "trigger")},
                    "processes": {"web": {"command": "python app.py", "instances": instances, "port": True,
                                          "health": {"http": "/", "interval": "300ms"},
                                          "resources": {"memory": "128Mi"},
                                          "stopGracePeriod": "2s", "drainPeriod": "0s"}}}}
    with open(work / "app.yaml", "w") as f:
        yaml.safe_dump(doc, f)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("metrics")
    os.makedirs(work / "src")
    (work / "src" / "app.py").write_text(APP)
    manifest(work, 1)
    c = UpCluster(work, nodes=1)
    c.work = str(work)
    try:
        c.corral("apply", "-f", str(work / "app.yaml"), "--wait", "--timeout", "120s")
        yield c
    finally:
        c.down()


def scrape(url, **kw):
    r = requests.get(url, timeout=10, **kw)
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("text/plain")
    return samples(r.text)


def agent_url(c):
    return f"http://127.0.0.1:{c.base + 5}/metrics"


def builder_url(c):
    return f"http://127.0.0.1:{c.base + 4}/metrics"


def test_the_builder_counts_its_build_and_its_queue(cluster):
    found = scrape(builder_url(cluster))
    assert value(found, "corral_builder_builds_total", result="succeeded") == 1
    assert value(found, "corral_builder_builds_total", result="failed") == 0
    assert total(found, "corral_builder_layer_cache_total", kind="env") == 1
    assert total(found, "corral_builder_layer_cache_total", kind="code") == 1
    assert value(found, "corral_builder_build_duration_seconds_count", result="succeeded") == 1
    assert value(found, "corral_builder_builds_in_state", state="queued") == 0
    assert value(found, "corral_builder_builds_in_state", state="succeeded") == 1


def test_the_agent_counts_instances_probes_fetches_and_a_restart(cluster):
    found = scrape(agent_url(cluster))
    assert value(found, "corral_agent_instances", app="counted", state="running") == 1
    assert value(found, "corral_agent_instances_ready", app="counted") == 1
    # corral up's agents share the builder's images folder: the image is there, nothing is fetched
    # (tests/integration/test_agent_images.py counts fetches)
    assert ("corral_agent_image_fetch_bytes_total", frozenset()) in found
    assert value(found, "corral_agent_probes_total", result="success") >= 1
    assert value(found, "corral_agent_probe_duration_seconds_count") >= 1
    assert value(found, "corral_agent_disk_free_bytes", folder="data") > 0
    iid = cluster.instances("counted")[0]["id"]
    assert value(found, "corral_agent_instance_memory_bytes", app="counted", instance=iid) >= 8 << 20
    assert (("corral_agent_instance_cpu_seconds_total", frozenset({("app", "counted"), ("instance", iid)}))
            in found)
    before = value(found, "corral_agent_restarts_total", reason="exited")

    open(os.path.join(cluster.work, "trigger"), "w").close()
    wait_for("the restart counted", lambda: value(scrape(agent_url(cluster)), "corral_agent_restarts_total",
                                                  reason="exited") == before + 1, timeout=30)


def reconciler_url(c, n):
    return f"http://127.0.0.1:{c.base + 10 * (n - 1)}/metrics"


def metrics_token(c):
    with open(os.path.join(c.work, "data", "metrics-token")) as f:
        return f.read()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_reconciler_s_metrics_need_a_token_and_the_metrics_token_opens_nothing_else(cluster):
    token = metrics_token(cluster)
    assert requests.get(reconciler_url(cluster, 1), timeout=10).status_code == 401
    assert requests.get(reconciler_url(cluster, 1), headers=bearer("0" * 64), timeout=10).status_code == 401
    _, api = load_config(cluster.env)   # the API token corral up wrote for the command
    for key in (token, api):
        scrape(reconciler_url(cluster, 1), headers=bearer(key))
    assert requests.get(f"http://127.0.0.1:{cluster.base}/v1/apps", headers=bearer(token),
                        timeout=10).status_code == 401


def test_the_reconcilers_count_leadership_nodes_instances_placements_and_requests(cluster):
    token = metrics_token(cluster)
    both = [scrape(reconciler_url(cluster, n), headers=bearer(token)) for n in (1, 2)]
    assert sorted(value(found, "corral_reconciler_leader") for found in both) == [0, 1]
    n = 1 if value(both[0], "corral_reconciler_leader") else 2

    def counts():   # the instance may be on its way back from the restart of the agent's test
        found = scrape(reconciler_url(cluster, n), headers=bearer(token))
        return [value(found, f"corral_reconciler_instances_{w}", app="counted") for w in ("desired", "running",
                                                                                          "ready")] == [1, 1, 1]
    wait_for("the instance desired, running and ready", counts, timeout=30)
    leader = scrape(reconciler_url(cluster, n), headers=bearer(token))
    assert value(leader, "corral_reconciler_epoch") >= 1
    assert value(leader, "corral_reconciler_nodes", state="ready") == 1
    assert value(leader, "corral_reconciler_sync_duration_seconds_count") >= 1
    assert value(leader, "corral_reconciler_planner_duration_seconds_count") >= 1
    assert value(leader, "corral_reconciler_bus_messages_total", type="report") > 0

    def summed(name, **labels):   # over both: the command asks either, and leadership may move under load
        return sum(total(scrape(reconciler_url(cluster, i), headers=bearer(token)), name, **labels) for i in (1, 2))
    assert summed("corral_reconciler_placements_total", reason="scale_up") == 1
    assert summed("corral_reconciler_api_requests_total", method="POST", route="/v1/apply", code="200") >= 1

    manifest(pathlib_path(cluster.work), 2)
    cluster.corral("apply", "-f", os.path.join(cluster.work, "app.yaml"), "--wait", "--timeout", "60s")
    assert summed("corral_reconciler_placements_total", reason="scale_up") == 2
    wait_for("both ready by the leader's view", lambda: value(scrape(reconciler_url(cluster, n), headers=bearer(token)),
                                                               "corral_reconciler_instances_ready", app="counted") == 2,
             timeout=15)
    found = scrape(reconciler_url(cluster, n), headers=bearer(token))
    assert [value(found, "corral_reconciler_rollouts", state=s) for s in ("rolling", "stuck")] == [0, 0]
    # the two applies (create, then scale) each completed once: their latency is observed, by whichever led then
    assert summed("corral_reconciler_apply_duration_seconds_count") >= 2


def test_a_rejected_bus_message_is_counted_by_reason(cluster):
    url, token = reconciler_url(cluster, 1), metrics_token(cluster)
    before = scrape(url, headers=bearer(token))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    # past `corral up`'s encryption (a peer who knows the key): the envelope's own checks count these
    as_client(sock, read_key(os.path.join(cluster.work, "data", "secret")))
    try:
        sock.connect(f"tcp://127.0.0.1:{cluster.base + 1}")
        sock.send(b"not a signed envelope")
        sock.send(b"0" * 64 + b"." + b'{"v":1}')
    finally:
        sock.close()
        ctx.term()
    wait_for("both counted", lambda: [value(scrape(url, headers=bearer(token)),
                                            "corral_reconciler_bus_rejected_messages_total", reason=r)
                                      - value(before, "corral_reconciler_bus_rejected_messages_total", reason=r)
                                      for r in ("malformed", "signature")] == [1, 1], timeout=10)


def pathlib_path(path):
    import pathlib
    return pathlib.Path(path)


def doc_blocks():
    """The YAML blocks of docs/monitoring.md: ``(prometheus.yml, the alert rules)``."""
    with open(os.path.join(ROOT, "docs", "monitoring.md")) as f:
        blocks = re.findall(r"```yaml\n(.*?)```", f.read(), re.S)
    config = next(b for b in blocks if "scrape_configs:" in b)
    rules = next(b for b in blocks if "groups:" in b)
    return config, rules


def test_the_monitoring_doc_scrapes_what_corral_up_listens_on():
    config, _ = doc_blocks()
    targets = {t for job in yaml.safe_load(config)["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    ports = dict(listen_ports(7070, 2, nodes=2))
    assert {int(t.rsplit(":", 1)[1]) for t in targets} == {p for p, what in ports.items()
                                                           if "API" in what or "metrics" in what}


def test_the_alert_rules_are_valid_and_name_only_metrics_the_daemons_serve(cluster, tmp_path):
    config, rules = doc_blocks()
    names = set()
    token = metrics_token(cluster)
    for url, kw in [(agent_url(cluster), {}), (builder_url(cluster), {}),
                    (reconciler_url(cluster, 1), {"headers": bearer(token)})]:
        names |= {name for name, _ in scrape(url, **kw)}
    groups = yaml.safe_load(rules)["groups"]
    alerts = [r for g in groups for r in g["rules"]]
    assert len(alerts) == 5
    for rule in alerts:
        named = set(re.findall(r"\bcorral_[a-z_]+", rule["expr"]))
        assert named and named <= names, (rule["alert"], named - names)
    promtool = shutil.which("promtool")
    if promtool is None:
        return   # parsed above; promtool checks them where it is installed (Debian: apt-get install prometheus)
    (tmp_path / "corral-alerts.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(config.replace("/root/.local/share/corral/metrics-token",
                                                            os.path.join(cluster.work, "data", "metrics-token")))
    for what in (["check", "rules", str(tmp_path / "corral-alerts.yml")],
                 ["check", "config", str(tmp_path / "prometheus.yml")]):
        r = subprocess.run([promtool, *what], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
