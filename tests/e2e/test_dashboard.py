"""See it: `corral get -w` and the dashboard, on one `corral up` cluster running the example app.

- `get apps -w -o json` (against the reconciler that does not lead) and `get instances hello -w` (a
  table) print the listing, then each change as it happens: a scale to 3 shows as MODIFIED apps and an
  ADDED instance, a scale back to 2 as a DELETED one; a watch whose reconciler is killed reads the
  other one and goes on, printing what changed meanwhile;
- the dashboard in a real headless Chromium: log in with a deploy token, see the app ready, scale it
  from its page and see the count arrive without a reload, drain a node from the nodes page and see its
  instance move on the cluster picture; a read token sees no button that changes anything; a hostile
  event message shows as text and runs nothing. A screenshot of each page is saved (the folder is printed).
"""
import json
import os
import queue
import signal
import subprocess
import threading

import pytest
import requests

from corral.store import open_store
from tests.e2e.browser import start_browser, wait_until
from tests.e2e.cluster import FAST, UpCluster, app_copy, wait_for
from tests.e2e.installed import corral_bin

TIMINGS = dict(FAST, watch_interval=0.3, watch_keepalive=1.0)
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
SELECT_ALL = "\ue009"   # selenium's Keys.CONTROL (held with "a"), without importing selenium where it is missing


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("dashboard")
    c = UpCluster(work, nodes=2, timings=TIMINGS)
    try:
        c.corral("apply", "-f", app_copy(work, "hello", instances=2), "--wait", "--timeout", "4m")
        with open(os.path.join(c.env["XDG_CONFIG_HOME"], "corral", "config.yaml")) as f:
            c.tokens = json.load(f)["tokens"]
        c.urls = [f"http://127.0.0.1:{c.base}", f"http://127.0.0.1:{c.base + 10}"]
        yield c
    finally:
        c.down()


def scale(cluster, instances, url=None):
    r = requests.post(f"{url or cluster.urls[0]}/v1/apps/hello/scale", json={"process": "web", "instances": instances},
                      headers={"Authorization": f"Bearer {cluster.tokens['deploy']}"}, timeout=10)
    assert r.status_code == 200, r.text


class Lines:
    """A `corral` command's output lines, read as they come."""

    def __init__(self, cluster, *args, api=None):
        env = dict(cluster.env, **({"CORRAL_API": api, "CORRAL_TOKEN": cluster.tokens["read"]} if api else {}))
        self.proc = subprocess.Popen([corral_bin(), *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=lambda: [self.lines.put(line.rstrip("\n")) for line in self.proc.stdout],
                         daemon=True).start()

    def until(self, what, predicate, timeout=60):
        """The first line (from now on) for which ``predicate`` holds; fail naming ``what``."""
        def next_match():
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                return None
            self.seen.append(line)
            return line if predicate(line) else None
        try:
            return wait_for(what, next_match, timeout=timeout, interval=0)
        except AssertionError:
            raise AssertionError(f"no line showed {what}; saw:\n" + "\n".join(self.seen[-30:]))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def test_get_w_prints_the_listing_then_each_change_as_json_and_as_rows(cluster):
    leader = cluster.leader()[0]
    other = cluster.urls[0] if leader == "r2" else cluster.urls[1]   # any reconciler serves the stream
    as_json = Lines(cluster, "get", "apps", "-w", "-o", "json", api=other)
    rows = Lines(cluster, "get", "instances", "hello", "-w")
    try:
        first = json.loads(as_json.until("the app listed", lambda line: line.startswith("{")))
        assert (first["kind"], first["type"], first["object"]["name"], first["object"]["ready"]) == \
            ("app", "ADDED", "hello", 2)
        assert rows.until("the header", lambda line: line.startswith("EVENT")).split()[:3] == ["EVENT", "ID", "APP"]
        listed = {rows.until("an instance listed", lambda line: line.startswith("ADDED")).split()[1] for _ in range(2)}
        scale(cluster, 3)
        as_json.until("ready 3 of 3", lambda line: (json.loads(line)["object"]["ready"],
                                                     json.loads(line)["object"]["desired"]) == (3, 3))
        row = rows.until("the new instance", lambda line: line.startswith("ADDED"))
        added = row.split()[1]
        assert added not in listed and added.startswith("hello-web-")
        if " running " not in row:   # seen first as pending or starting (as it mostly is): then it runs
            rows.until("the new instance running", lambda line: line.startswith("MODIFIED") and added in line
                       and " running " in line)
        scale(cluster, 2)
        rows.until("an instance deleted", lambda line: line.startswith("DELETED"))
        as_json.until("ready 2 of 2", lambda line: (json.loads(line)["object"]["ready"],
                                                     json.loads(line)["object"]["desired"]) == (2, 2))
    finally:
        as_json.stop()
        rows.stop()


def test_get_w_goes_on_through_the_loss_of_the_reconciler_it_reads(cluster):
    watch = Lines(cluster, "get", "apps", "-w", "-o", "json")   # the client's config: r1, then r2

    def ready(want):
        def holds(line):
            return line.startswith("{") and (json.loads(line)["object"]["ready"],
                                             json.loads(line)["object"]["desired"]) == (want, want)
        return holds
    try:
        watch.until("the app listed", lambda line: line.startswith("{"))
        os.kill(cluster.daemons("reconciler")["r1"], signal.SIGKILL)   # corral up starts it again
        watch.until("the loss said", lambda line: line.startswith("watch: ") and "reconnecting" in line)
        scale(cluster, 3, url=cluster.urls[1])
        watch.until("ready 3 of 3, read from another reconciler", ready(3))
        scale(cluster, 2, url=cluster.urls[1])
        watch.until("ready 2 of 2", ready(2))
        assert watch.proc.poll() is None, "the watch ended"
    finally:
        watch.stop()
    wait_for("r1 serving again (the dashboard's tests use it)", lambda: _answers(cluster.urls[0]), timeout=60)


def _answers(url):
    try:
        requests.get(f"{url}/healthz", timeout=2)
        return True
    except requests.RequestException:
        return False


# -- the dashboard -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(cluster, tmp_path_factory, request):
    driver = start_browser()
    driver.shots = tmp_path_factory.mktemp("screenshots")
    try:
        yield driver
    finally:
        driver.quit()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(f"dashboard screenshots: {driver.shots}")


def by_css(driver, selector):
    return driver.find_elements("css selector", selector)


def go(driver, cluster, page):
    driver.get(f"{cluster.urls[0]}/ui/#/{page}")


def login(driver, cluster, role):
    # Cleared from a page of the same origin that runs no dashboard code: a dashboard page still
    # logging in with the saved token could not store it again after the clear.
    driver.get(f"{cluster.urls[0]}/ui/favicon.svg")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{cluster.urls[0]}/ui/")
    box = wait_until("the login form", lambda: driver.find_element("id", "token").is_displayed()
                     and driver.find_element("id", "token"))
    box.send_keys(cluster.tokens[role])
    driver.find_element("css selector", "#login button").click()
    wait_until(f"logged in as {role}", lambda: driver.find_element("id", "who").text == f"token up-{role}, role: {role}")
    wait_until("the stream live", lambda: driver.find_element("id", "live").text == "live")


def click(driver, selector):
    """Click the element ``selector`` names, looking again while the page is drawn anew under it."""
    def clicked():
        driver.find_element("css selector", selector).click()
        return True
    wait_until(f"a click on {selector}", clicked)


def shot(driver, name):
    driver.save_screenshot(str(driver.shots / f"{name}.png"))


def ready_text(driver):
    cells = by_css(driver, '#page .ready[data-app="hello"]')
    return cells[0].text if cells else None


def test_log_in_see_the_app_ready_and_scale_it_from_its_page_live(cluster, browser):
    scale(cluster, 2)   # as the cluster started, whatever a test before left
    login(browser, cluster, "deploy")
    assert "token" not in browser.current_url and cluster.tokens["deploy"] not in browser.current_url
    wait_until("hello 2/2 on the apps page", lambda: ready_text(browser) == "2/2")
    shot(browser, "apps")
    click(browser, '#page a[href="#/apps/hello"]')
    wait_until("the app's page", lambda: by_css(browser, '#page[data-page="app"] button.scale'))
    browser.execute_script("window.__sameLoad = true")   # gone if the page reloads
    wait_until("the app's logs shown", lambda: "…" not in browser.find_element("css selector", "#page pre.logs").text)
    shot(browser, "app")

    def type_3():   # the page may be drawn anew under the fingers (a change came): type again
        box = browser.find_element("css selector", 'input.scale-input[data-process="web"]')
        box.send_keys(SELECT_ALL, "a")
        box.send_keys("3")
        return browser.find_element("css selector", 'input.scale-input[data-process="web"]').get_attribute("value") == "3"
    wait_until("3 typed", type_3)

    def scale_asked():   # asking twice is asking once: the count is the same
        browser.find_element("css selector", 'button.scale[data-process="web"]').click()
        return wait_until("the answer", lambda: browser.find_element("id", "flash").text, timeout=5)
    assert wait_until("the scale asked", scale_asked) == "Asked to scale hello/web to 3."
    wait_until("3/3 ready, pushed by the stream", lambda: ready_text(browser) == "3/3", timeout=60)
    assert browser.execute_script("return window.__sameLoad") is True, "the page was reloaded"
    scale(cluster, 2)
    wait_until("2/2 again", lambda: ready_text(browser) == "2/2", timeout=60)


def instances_on(driver, node):
    return [e.get_attribute("class") for e in by_css(driver, f'#page .node[data-node="{node}"] .inst[data-app="hello"]')]


def test_drain_a_node_from_the_page_and_see_its_instances_move(cluster, browser):
    scale(cluster, 2)
    login(browser, cluster, "deploy")
    go(browser, cluster, "cluster")
    wait_until("both nodes drawn", lambda: len(by_css(browser, "#page .node")) == 2)
    wait_until("the app settled at two running instances",
               lambda: sum(c.count("running") for n in ("node-1", "node-2") for c in instances_on(browser, n)) == 2)
    busy = "node-1" if instances_on(browser, "node-1") else "node-2"
    other = "node-2" if busy == "node-1" else "node-1"
    go(browser, cluster, "nodes")
    click(browser, f'#page button.drain[data-node="{busy}"]')
    wait_until(f"{busy} draining", lambda: "draining" in browser.find_element(
        "css selector", f'#page .node-state[data-node="{busy}"]').text)
    shot(browser, "nodes")
    browser.execute_script("window.__sameLoad = true")
    go(browser, cluster, "cluster")
    wait_until(f"every instance moved to {other}", lambda: not instances_on(browser, busy) and
               [c for c in instances_on(browser, other) if "running" in c and "notready" not in c] and
               len(instances_on(browser, other)) == 2, timeout=90)
    assert browser.execute_script("return window.__sameLoad") is True, "the page was reloaded"
    shot(browser, "cluster")
    go(browser, cluster, "nodes")
    click(browser, f'#page button.uncordon[data-node="{busy}"]')
    wait_until(f"{busy} ready again", lambda: browser.find_element(
        "css selector", f'#page .node-state[data-node="{busy}"]').text == "ready")


def test_the_other_pages_and_a_hostile_event_message_shown_as_text(cluster, browser):
    store = open_store(f"sqlite:///{os.path.join(cluster.workdir, 'data', 'corral.db')}")
    try:
        store.add_event("app", "hello", "Hostile", HOSTILE, "test")
    finally:
        store.close()
    login(browser, cluster, "read")
    go(browser, cluster, "events")
    cell = wait_until("the hostile message listed", lambda: [e for e in by_css(browser, "#page .event-message")
                                                             if e.text == HOSTILE])
    assert cell and browser.execute_script("return window.__pwned") is None
    assert not by_css(browser, "#page img") and not by_css(browser, "#page script")
    shot(browser, "events")
    for page, marker in (("builds", "#page table"), ("gitsources", "#page p"), ("apps/hello", "#page pre.logs")):
        go(browser, cluster, page)
        wait_until(f"the {page} page", lambda: by_css(browser, marker))
        shot(browser, page.replace("apps/hello", "app-events"))
    assert browser.execute_script("return window.__pwned") is None


def test_the_apps_runs_on_its_page_live(cluster, browser):
    login(browser, cluster, "read")
    go(browser, cluster, "apps/hello")
    wait_until("the app's page", lambda: by_css(browser, '#page[data-page="app"] pre.logs'))
    rid = cluster.corral("run", "hello", "--detach", "--", "python", "-c", "print('once')").stdout.strip()

    def listed():
        found = by_css(browser, f'#page .run-state[data-run="{rid}"]')
        return found and found[0].text in ("succeeded", "failed") and found[0].text
    assert wait_until("the run listed as it ends, without a reload", listed, timeout=90) == "succeeded"
    [run] = [r for r in cluster.json("get", "runs", "hello") if r["id"] == rid]
    row = wait_until("the run's row read", lambda: browser.find_element(   # the page may be drawn anew meanwhile
        "css selector", f'#page .run-id[data-run="{rid}"]').find_element("xpath", "./../..").text)
    assert row.split()[:3] == [rid, run["process"], "oneoff"], row
    shot(browser, "app-runs")


def test_a_read_token_sees_no_button_that_changes_anything(cluster, browser):
    login(browser, cluster, "read")
    for page in ("apps", "apps/hello", "nodes", "cluster", "gitsources"):
        go(browser, cluster, page)
        wait_until(f"the {page} page drawn", lambda: by_css(browser, "#page h1"))
        if page == "apps/hello":
            wait_until("the app's instances", lambda: by_css(browser, "#page table"))
        assert not by_css(browser, "#page button") and not by_css(browser, "#page input"), page
    r = requests.post(f"{cluster.urls[0]}/v1/nodes/node-1/drain",
                      headers={"Authorization": f"Bearer {cluster.tokens['read']}"}, timeout=10)
    assert r.status_code == 403 and "needs the deploy role" in r.json()["error"]


def test_the_dashboard_is_served_with_a_policy_that_runs_no_inline_script(cluster):
    r = requests.get(f"{cluster.urls[0]}/ui/", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    policy = dict(p.strip().split(" ", 1) for p in r.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert requests.get(f"{cluster.urls[0]}/ui/../secret", timeout=10).status_code == 404
    assert requests.get(f"{cluster.urls[0]}/ui/.hidden", timeout=10).status_code == 404
