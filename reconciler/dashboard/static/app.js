// corral's dashboard: one page, live from the API's change stream (GET /v1/watch, server-sent events).
// Everything shown is inserted as text (textContent), never as markup: names and messages come from
// apps and users, and must not run here. The token lives in this tab's sessionStorage only.
"use strict";
(function () {
  const KEY = "corral.token";
  const WRITERS = ["deploy", "admin"];
  const S = {
    token: null, role: null, apps: new Map(), instances: new Map(), nodes: new Map(), events: [],
    synced: false, stream: null, extra: {}, drafts: {}, fetched: {}, polls: {},
  };
  const $ = (id) => document.getElementById(id);

  // -- building DOM from text only ------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const table = (head, rows) => el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))),
    rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))));
  const canWrite = () => WRITERS.includes(S.role);
  const badge = (c) => el("span", { class: "badge " + c.status, title: (c.reason || "") + ": " + (c.message || "") },
    c.type + " " + c.status + (c.status === "False" && c.reason ? " (" + c.reason + ")" : ""));
  const short = (s) => (s ? String(s).slice(0, 19) : "-");
  const mem = (n) => { n = Number(n || 0); return n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + "Gi" : n >= 1 << 20 ? (n / (1 << 20)).toFixed(0) + "Mi" : String(n); };
  const link = (href, text) => el("a", { href: href }, text);
  const appHref = (name) => "#/apps/" + encodeURIComponent(name);

  // -- the API ----------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + S.token, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!r.ok) throw new Error((data && data.error) || method + " " + path + " failed with HTTP " + r.status);
    return data;
  }

  function flash(text, isError) {
    const f = $("flash");
    f.textContent = text;
    f.className = isError ? "flash error" : "flash";
  }

  async function act(method, path, body, done) {
    try {
      await api(method, path, body);
      flash(done);
    } catch (e) {
      flash(e.message, true);
    }
  }

  // -- logging in and out -----------------------------------------------------------------------
  async function login(token, fromForm) {
    S.token = token;
    const who = await api("GET", "/v1/whoami");
    S.role = who.role;
    // Only a token typed in is stored: a saved one is there already, and storing it again after the
    // answer came could bring it back into a tab that logged out (or was cleared) meanwhile.
    if (fromForm) sessionStorage.setItem(KEY, token);
    $("login").hidden = true;
    $("nav").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = "token " + who.name + ", role: " + S.role;   // text only: a name is no markup
    document.body.dataset.role = S.role;
    connect();
    render(true);
  }

  function logout(message) {
    sessionStorage.removeItem(KEY);
    S.token = null;
    S.role = null;
    if (S.stream) S.stream.abort();
    S.stream = null;
    $("nav").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("page").replaceChildren();
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setLive(false);
  }

  // -- the change stream ------------------------------------------------------------------------
  function setLive(on) {
    $("live").textContent = on ? "live" : "offline";
    $("live").className = on ? "live on" : "live";
  }

  async function connect() {
    const ctl = new AbortController();
    S.stream = ctl;
    const fresh = { apps: new Map(), instances: new Map(), nodes: new Map(), events: [] };
    let synced = false;
    try {
      const r = await fetch("/v1/watch", { headers: { Authorization: "Bearer " + S.token }, signal: ctl.signal, cache: "no-store" });
      if (r.status === 401) { logout("The token was refused."); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (name === "synced") {
            synced = true;
            Object.assign(S, fresh);
            S.synced = true;
            setLive(true);
            render(false);
          } else if (name === "message" && data) {
            applyChange(synced ? S : fresh, JSON.parse(data));
            if (synced) later();
          }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    if (S.stream === ctl) {
      setLive(false);
      setTimeout(() => { if (S.stream === ctl && S.token) connect(); }, 2000);
    }
  }

  function applyChange(into, c) {
    if (c.kind === "event") {
      into.events.push(c.object);
      if (into === S && c.object.kind === "app") delete S.fetched["runs:" + c.object.name];   // runs are audited as events
      if (into.events.length > 300) into.events.splice(0, into.events.length - 300);
      return;
    }
    const map = { app: into.apps, instance: into.instances, node: into.nodes }[c.kind];
    if (!map) return;
    const key = c.kind === "instance" ? c.object.id : c.object.name;
    if (c.type === "DELETED") map.delete(key);
    else map.set(key, c.object);
    if (c.kind === "app" && into === S) S.fetched = {};   // an app changed: its history and builds may have
  }

  let pending = null;
  function later() {
    if (pending === null) pending = setTimeout(() => { pending = null; render(false); }, 100);
  }

  // -- pages ------------------------------------------------------------------------------------
  function route() {
    const parts = (location.hash || "#/apps").slice(2).split("/").map(decodeURIComponent);
    return { page: parts[0] || "apps", name: parts[1] || null };
  }

  // Data that is not in the stream (history, builds, logs, GitSources): fetched when a page is entered,
  // and again when an app changed; kept in S.extra[key].
  function fetchOnce(key, path, parse) {
    if (S.fetched[key]) return S.extra[key];
    S.fetched[key] = true;
    api("GET", path).then((d) => { S.extra[key] = parse ? parse(d) : d; later(); })
      .catch((e) => { S.extra[key] = { error: e.message }; later(); });
    return S.extra[key];
  }

  function render(entered) {
    if (!S.token) return;
    const r = route();
    if (entered) { S.fetched = {}; flash(""); }
    for (const a of document.querySelectorAll("#nav a")) a.className = a.dataset.page === r.page ? "current" : "";
    const pages = { apps: appsPage, app: appPage, nodes: nodesPage, cluster: clusterPage, builds: buildsPage, gitsources: gitsourcesPage, events: eventsPage };
    const page = r.page === "apps" && r.name ? appPage : pages[r.page] || appsPage;
    const next = el("div", { id: "page", "data-page": r.page === "apps" && r.name ? "app" : r.page }, S.synced ? page(r.name) : el("p", { class: "muted" }, "Loading…"));
    const now = $("page");
    if (now.outerHTML === next.outerHTML) return;   // unchanged: leave the elements be
    const focused = document.activeElement && now.contains(document.activeElement) ? document.activeElement.id : null;
    now.replaceWith(next);
    if (focused && $(focused)) $(focused).focus();   // a change that came in while typing keeps the caret where it was
  }

  function appsPage() {
    const apps = [...S.apps.values()].sort((a, b) => a.name.localeCompare(b.name));
    return [el("h1", {}, "Apps"), apps.length ? table(["NAME", "READY", "REVISION", "GENERATION", "CONDITIONS"],
      apps.map((a) => [link(appHref(a.name), a.name), el("span", { class: "ready", "data-app": a.name }, a.ready + "/" + a.desired),
        a.revision || "-", a.observedGeneration + "/" + a.generation, (a.conditions || []).map(badge)]))
      : el("p", { class: "muted" }, "No apps yet: corral apply -f manifests/examples/hello.yaml"),
      el("h2", {}, "Cluster"), clusterPicture()];
  }

  function scaleControls(a) {
    if (!canWrite()) return null;
    const procs = Object.entries((a.spec && a.spec.processes) || {});
    return [el("h2", {}, "Scale"), procs.map(([p, spec]) => {
      const key = a.name + "/" + p;
      const input = el("input", { type: "number", min: 0, value: S.drafts[key] ?? spec.instances ?? 1, "data-process": p, class: "scale-input",
        id: "scale-" + p, "aria-label": "instances of " + p,
        oninput: (e) => { S.drafts[key] = e.target.value; } });
      return el("p", {}, p + ": ", input, el("button", { type: "button", class: "scale", "data-process": p, onclick: () => {
        delete S.drafts[key];
        act("POST", "/v1/apps/" + encodeURIComponent(a.name) + "/scale", { process: p, instances: Number(input.value) },
          "Asked to scale " + a.name + "/" + p + " to " + input.value + ".");
      } }, "Scale"));
    })];
  }

  function appPage(name) {
    const a = S.apps.get(name);
    if (!a) return [el("h1", {}, name), el("p", { class: "muted" }, "No such app (now).")];
    const path = "/v1/apps/" + encodeURIComponent(name);
    const revs = fetchOnce("revs:" + name, path + "/revisions") || [];
    const builds = fetchOnce("builds:" + name, "/v1/builds?app=" + encodeURIComponent(name)) || [];
    const runs = fetchOnce("runs:" + name, "/v1/runs?app=" + encodeURIComponent(name)) || [];
    pollWhileUnfinished("runs:" + name, runs);
    const insts = [...S.instances.values()].filter((i) => i.app === name);
    const logKey = "logs:" + name + ":" + insts.filter((i) => i.state === "running").map((i) => i.id).join(",");
    if (!S.fetched[logKey]) { S.fetched[logKey] = true; loadLogs(name, insts); }
    const byNode = new Map();
    for (const i of insts) { if (!byNode.has(i.node)) byNode.set(i.node, []); byNode.get(i.node).push(i); }
    const events = S.events.filter((e) => e.kind === "app" && e.name === name).slice(-20).reverse();
    const build = Array.isArray(builds) && builds.length ? builds[0] : null;
    return [
      el("h1", {}, "App " + name),
      el("p", {}, el("span", { class: "ready", "data-app": name }, a.ready + "/" + a.desired), " ready · revision " + (a.revision || "-") +
        " · generation " + a.observedGeneration + "/" + a.generation + (a.deleting ? " · deleting" : "")),
      el("p", {}, (a.conditions || []).map(badge)),
      table(["CONDITION", "STATUS", "REASON", "MESSAGE"], (a.conditions || []).map((c) => [c.type, c.status, c.reason || "", c.message || ""])),
      scaleControls(a),
      el("h2", {}, "Instances by node"),
      [...byNode.keys()].sort().map((n) => [el("h3", {}, n), table(["ID", "PROCESS", "STATE", "READY", "ADDRESS", "RESTARTS", "MESSAGE"],
        byNode.get(n).map((i) => [i.id, i.process, i.state, i.ready ? "yes" : "no", i.port ? i.address + ":" + i.port : (i.address || "-"), i.restarts, i.message || ""]))]),
      el("h2", {}, "Rollout history"),
      revs.error ? el("p", { class: "error" }, revs.error) : table(["REVISION", "IMAGE", "GENERATION", "CREATED", ""], (revs || []).map((v) => [
        (v.current ? "* " : "") + v.revision, short(v.image), v.generation, v.created_at ? new Date(v.created_at * 1000).toISOString() : "-",
        canWrite() && !v.current ? el("button", { type: "button", class: "undo", onclick: () => act("POST", path + "/undo", { toRevision: v.revision },
          "Asked to roll " + name + " back to revision " + v.revision + ".") }, "Undo to " + v.revision) : ""])),
      el("h2", {}, "Build"),
      build ? [el("p", {}, "build " + build.id + ": " + build.state + (build.cache ? " (cache " + build.cache + ")" : "") + (build.error ? " — " + build.error : "")),
        build.log_tail ? el("pre", { class: "build-log" }, build.log_tail) : null] : el("p", { class: "muted" }, "No build yet."),
      el("h2", {}, "Runs"),
      runsTable(runs),
      el("h2", {}, "Recent logs"),
      el("pre", { class: "logs" }, (S.extra.logs && S.extra.logs[name]) || "…"),
      el("h2", {}, "Events"),
      eventsTable(events),
    ];
  }

  // The last lines of each running instance (at most three of them), through the logs route.
  async function loadLogs(name, insts) {
    const out = [];
    for (const i of insts.filter((x) => x.state === "running").slice(0, 3)) {
      try {
        const r = await fetch("/v1/instances/" + encodeURIComponent(i.id) + "/logs?tail=20", { headers: { Authorization: "Bearer " + S.token } });
        for (const line of (await r.text()).split("\n")) {
          if (!line.trim()) continue;
          const item = JSON.parse(line);
          for (const l of (item.data || "").split("\n")) if (l) out.push(i.id + " " + l);
          if (item.error) out.push(i.id + ": " + item.error);
        }
      } catch (e) {
        out.push(i.id + ": " + e.message);
      }
    }
    S.extra.logs = Object.assign({}, S.extra.logs, { [name]: out.join("\n") || "(no output yet)" });
    later();
  }

  // Runs are not in the change stream: while one shown has not finished, fetch them again every 2 s.
  const FINISHED = ["succeeded", "failed", "skipped"];   // corral/runs.py: the states a run ends in
  function pollWhileUnfinished(key, runs) {
    if (S.polls[key] || !Array.isArray(runs) || runs.every((r) => FINISHED.includes(r.state))) return;
    S.polls[key] = setTimeout(() => { delete S.polls[key]; delete S.fetched[key]; later(); }, 2000);
  }

  // The app's runs (scheduled and one-off), newest first: the last ten; `corral get runs APP` lists all.
  function runsTable(runs) {
    if (runs.error) return el("p", { class: "error" }, runs.error);
    if (!runs.length) return el("p", { class: "muted" }, "No runs: a process with a schedule, or corral run " + "APP -- COMMAND, makes one.");
    return table(["ID", "PROCESS", "KIND", "SLOT", "STATE", "NODE", "EXIT", "DURATION", "CREATED"],
      runs.slice(-10).reverse().map((r) => [el("span", { class: "run-id", "data-run": r.id }, r.id), r.process, r.kind, r.slot || "-",
        el("span", { class: "run-state", "data-run": r.id }, r.state), r.node || "-", r.exitCode ?? "-",
        r.duration === null || r.duration === undefined ? "-" : r.duration + " s", r.created_at || "-"]));
  }

  function eventsTable(events) {
    return events.length ? table(["TIME", "OBJECT", "REASON", "MESSAGE", "ACTOR"],
      events.map((e) => [e.time, e.kind + "/" + e.name, e.reason, el("span", { class: "event-message" }, e.message), e.actor]))
      : el("p", { class: "muted" }, "No events.");
  }

  function nodeButtons(n) {
    if (!canWrite()) return "";
    const path = "/v1/nodes/" + encodeURIComponent(n.name) + "/";
    const b = (verb) => el("button", { type: "button", class: verb, "data-node": n.name, onclick: () => act("POST", path + verb, undefined, "node " + n.name + ": " + verb + " asked.") }, verb);
    return [n.state === "cordoned" || n.draining ? b("uncordon") : b("cordon"), n.draining ? null : b("drain")];
  }

  function nodesPage() {
    const nodes = [...S.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
    return [el("h1", {}, "Nodes"), table(["NAME", "STATE", "ADDRESS", "INSTANCES", "CPU", "MEMORY", "LAST SEEN", ""],
      nodes.map((n) => [n.name, el("span", { class: "node-state", "data-node": n.name }, n.state + (n.draining ? " (draining)" : "")), n.address || "-", n.instances,
        (n.allocated.cpu || 0) + "/" + ((n.capacity || {}).cpu || 0), mem(n.allocated.memory) + "/" + mem((n.capacity || {}).memory), n.last_seen || "-", nodeButtons(n)]))];
  }

  function clusterPage() {
    return [el("h1", {}, "Cluster"), clusterPicture()];
  }

  // Nodes as boxes, each with its instances coloured by state.
  function clusterPicture() {
    const nodes = [...S.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
    const insts = [...S.instances.values()];
    const states = ["running", "starting", "pending", "stopping", "stopped", "failed", "unknown"];
    return [el("p", { class: "legend" }, states.map((s) => el("span", { class: "inst " + s }, s))),
      el("div", { class: "nodes" }, nodes.map((n) => el("div", { class: "node " + n.state, "data-node": n.name },
        el("h3", {}, n.name + " · " + n.state + (n.draining ? " (draining)" : "")),
        el("div", { class: "muted" }, "cpu " + (n.allocated.cpu || 0) + "/" + ((n.capacity || {}).cpu || 0) + " · memory " +
          mem(n.allocated.memory) + "/" + mem((n.capacity || {}).memory)),
        insts.filter((i) => i.node === n.name).sort((a, b) => a.id.localeCompare(b.id)).map((i) =>
          el("span", { class: "inst " + i.state + (i.state === "running" && !i.ready ? " notready" : ""), "data-app": i.app, title: i.id + ": " + i.state + (i.message ? " — " + i.message : "") }, i.app + "/" + i.process)))))];
  }

  function buildsPage() {
    const builds = fetchOnce("builds", "/v1/builds") || [];
    return [el("h1", {}, "Builds"), builds.error ? el("p", { class: "error" }, builds.error) :
      table(["ID", "APP", "STATE", "CACHE", "DURATION", "IMAGE", "ERROR"], builds.map((b) =>
        [b.id, link(appHref(b.app), b.app), b.state, b.cache || "-", b.duration === null ? "-" : b.duration.toFixed(1) + "s", short(b.image), b.error || ""]))];
  }

  function gitsourcesPage() {
    const sources = fetchOnce("gitsources", "/v1/gitsources") || [];
    return [el("h1", {}, "GitSources"), sources.error ? el("p", { class: "error" }, sources.error) : sources.length ?
      table(["NAME", "URL", "BRANCH", "SYNCED", "APPS", "LAST ERROR", ""], sources.map((g) => [g.name, g.url, g.branch, short(g.syncedCommit),
        g.synced + " synced, " + g.outOfSync + " not", g.lastError || "",
        canWrite() ? el("button", { type: "button", onclick: () => act("POST", "/v1/gitsources/" + encodeURIComponent(g.name) + "/sync", {}, "Sync of " + g.name + " asked.") }, "Sync") : ""]))
      : el("p", { class: "muted" }, "No GitSources.")];
  }

  function eventsPage() {
    return [el("h1", {}, "Events"), eventsTable(S.events.slice(-100).reverse())];
  }

  // -- start ----------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", (e) => {
      e.preventDefault();
      login($("token").value.trim(), true).catch((err) => logout(err.message));
      $("token").value = "";
    });
    $("logout").addEventListener("click", () => logout(""));
    window.addEventListener("hashchange", () => render(true));
    const saved = sessionStorage.getItem(KEY);
    if (saved) login(saved, false).catch(() => logout("")); else logout("");
  });
})();
