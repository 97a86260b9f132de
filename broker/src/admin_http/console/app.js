// Rill console: a hash-routed page over the broker's /v1 JSON endpoints. No framework and no
// build step: the file is embedded in the broker binary as is.
"use strict";

const REFRESH_MS = 5000;
const view = document.getElementById("view");
// Previous byte totals per topic, to show throughput as the change between two refreshes.
const previous = { at: 0, topics: {} };
let timer = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(1)} ${units[i]}`;
}

// Exact value in data-value (tests read it), human-friendly text shown.
function num(n, testid, fmt) {
  const shown = fmt ? fmt(n) : String(n);
  return `<td class="num" data-testid="${esc(testid)}" data-value="${esc(n)}" title="${esc(n)}">${esc(shown)}</td>`;
}

function card(label, value, testid, exact) {
  return `<div class="card"><div class="label">${esc(label)}</div><div class="value" data-testid="${esc(testid)}" data-value="${esc(exact ?? value)}">${esc(value)}</div></div>`;
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${r.status}`);
  return body;
}

async function overview() {
  const c = await get("/v1/cluster");
  const dirs = c.log_dirs.map((d) => `<tr><td>${esc(d.dir)}</td>${num(d.free_bytes, "dir-free", bytes)}${num(d.total_bytes, "dir-total", bytes)}</tr>`).join("");
  const listeners = c.brokers.map((b) => `<tr>${num(b.node_id, "broker-id")}<td>${b.listeners.map((l) => esc(`${l.name}://${l.host}:${l.port}`)).join("<br>")}</td></tr>`).join("");
  return `<h1>Cluster overview</h1>
  <div class="cards">
    ${card("Cluster id", c.cluster_id, "cluster-id")}
    ${card("Node id", c.node_id, "node-id")}
    ${card("Ready", c.ready ? "ready" : "not ready", "ready", c.ready)}
    ${card("Version", c.version, "version")}
    ${card("Uptime", `${Math.floor(c.uptime_seconds)} s`, "uptime", c.uptime_seconds)}
    ${card("Brokers", c.brokers.length, "broker-count")}
    ${card("Topics", c.topics, "topic-count")}
    ${card("Partitions", c.partitions, "partition-count")}
    ${card("Under-replicated", c.under_replicated_partitions, "under-replicated")}
    ${card("Consumer groups", c.groups, "group-count")}
    ${card("Log size", bytes(c.log_size_bytes), "log-size", c.log_size_bytes)}
    ${card("Bytes in", bytes(c.bytes_in_total), "bytes-in", c.bytes_in_total)}
    ${card("Bytes out", bytes(c.bytes_out_total), "bytes-out", c.bytes_out_total)}
    ${card("Messages in", c.messages_in_total, "messages-in")}
  </div>
  <h2>Brokers</h2><table><tr><th class="num">Node</th><th>Listeners</th></tr>${listeners}</table>
  <h2>Log directories</h2><table><tr><th>Directory</th><th class="num">Free</th><th class="num">Total</th></tr>${dirs}</table>`;
}

async function topics() {
  const list = await get("/v1/topics");
  const now = Date.now();
  const dt = previous.at ? (now - previous.at) / 1000 : 0;
  const rows = list.map((t) => {
    const p = previous.topics[t.name];
    const rin = p && dt > 0 ? (t.bytes_in - p.bytes_in) / dt : 0;
    const rout = p && dt > 0 ? (t.bytes_out - p.bytes_out) / dt : 0;
    previous.topics[t.name] = t;
    return `<tr data-topic="${esc(t.name)}"><td><a href="#/topics/${encodeURIComponent(t.name)}">${esc(t.name)}</a>${t.internal ? ' <span class="pill">internal</span>' : ""}</td>
      ${num(t.partitions, "partitions")}${num(t.size_bytes, "size", bytes)}${num(t.messages, "messages")}
      ${num(t.bytes_in, "bytes-in", bytes)}${num(t.bytes_out, "bytes-out", bytes)}
      ${num(Math.round(rin), "rate-in", (v) => `${bytes(v)}/s`)}${num(Math.round(rout), "rate-out", (v) => `${bytes(v)}/s`)}</tr>`;
  }).join("");
  previous.at = now;
  return `<h1>Topics</h1><table data-testid="topics-table"><tr><th>Topic</th><th class="num">Partitions</th><th class="num">Size</th><th class="num">Messages</th>
    <th class="num">Bytes in</th><th class="num">Bytes out</th><th class="num">In/s</th><th class="num">Out/s</th></tr>${rows}</table>`;
}

async function topic(name) {
  const t = await get(`/v1/topics/${encodeURIComponent(name)}`);
  const rows = t.partition_details.map((p) => `<tr data-partition="${p.partition}">${num(p.partition, "partition")}${num(p.leader, "leader")}
    ${num(p.log_start_offset, "log-start")}${num(p.log_end_offset, "log-end")}${num(p.size_bytes, "size", bytes)}${num(p.segments, "segments")}
    ${num(p.messages_in, "messages-in")}<td><a href="#/browse/${encodeURIComponent(t.name)}/${p.partition}">browse</a></td></tr>`).join("");
  const configs = Object.entries(t.configs).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
  return `<h1>Topic <span data-testid="topic-name">${esc(t.name)}</span></h1>
    <p class="muted">id ${esc(t.id)}</p>
    <table data-testid="partitions-table"><tr><th class="num">Partition</th><th class="num">Leader</th><th class="num">Log start</th><th class="num">Log end</th>
    <th class="num">Size</th><th class="num">Segments</th><th class="num">Messages in</th><th></th></tr>${rows}</table>
    <h2>Config overrides</h2>${configs ? `<table>${configs}</table>` : '<p class="muted">none</p>'}`;
}

async function groups() {
  const list = await get("/v1/groups");
  const rows = list.map((g) => `<tr data-group="${esc(g.group)}"><td><a href="#/groups/${encodeURIComponent(g.group)}">${esc(g.group)}</a></td>
    <td>${esc(g.type)}</td><td data-testid="state">${esc(g.state)}</td>${num(g.members, "members")}${num(g.generation, "generation")}
    ${num(g.partitions, "partitions")}${num(g.lag, "lag")}</tr>`).join("");
  return `<h1>Consumer groups</h1>${list.length ? "" : '<p class="muted">no groups</p>'}
    <table data-testid="groups-table"><tr><th>Group</th><th>Type</th><th>State</th><th class="num">Members</th><th class="num">Rebalances</th>
    <th class="num">Partitions</th><th class="num">Lag</th></tr>${rows}</table>`;
}

async function group(id) {
  const g = await get(`/v1/groups/${encodeURIComponent(id)}`);
  const members = g.members.map((m) => `<tr><td>${esc(m.member_id)}</td><td>${esc(m.client_id)}</td><td>${esc(m.client_host)}</td></tr>`).join("");
  const offsets = g.offsets.map((o) => `<tr data-topic="${esc(o.topic)}" data-partition="${o.partition}"><td>${esc(o.topic)}</td>${num(o.partition, "partition")}
    ${num(o.committed_offset, "committed")}${num(o.log_end_offset, "log-end")}${num(o.lag, "lag")}</tr>`).join("");
  return `<h1>Group <span data-testid="group-id">${esc(g.group)}</span></h1>
    <div class="cards">${card("State", g.state, "group-state")}${card("Type", g.type, "group-type")}${card("Members", g.members.length, "member-count")}${card("Total lag", g.lag, "total-lag")}</div>
    <h2>Lag per partition</h2><table data-testid="lag-table"><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed</th><th class="num">Log end</th><th class="num">Lag</th></tr>${offsets}</table>
    <h2>Members</h2><table><tr><th>Member</th><th>Client id</th><th>Host</th></tr>${members}</table>`;
}

// One key or value shown as UTF-8 text, hex, or Confluent-Avro (schema id + payload hex).
function shown(v, fmt) {
  if (v === null || v === undefined) return '<span class="muted">null</span>';
  if (fmt === "hex") return esc(v.hex);
  if (fmt === "avro") {
    return v.schema_id === null ? '<span class="muted">not Confluent wire format</span>' : `schema ${esc(v.schema_id)}: ${esc(v.hex.slice(10))}`;
  }
  return v.text === null ? `<span class="muted">binary</span> ${esc(v.hex)}` : esc(v.text);
}

async function browse(topicName, partition, params) {
  const limit = params.get("limit") || "20";
  const fmt = params.get("fmt") || "text";
  const r = await get(`/v1/topics/${encodeURIComponent(topicName)}/partitions/${partition}/records?limit=${encodeURIComponent(limit)}`);
  const rows = r.records.slice().reverse().map((m) => `<tr data-offset="${m.offset}">${num(m.offset, "offset")}
    <td>${esc(new Date(m.timestamp).toISOString())}</td><td class="data" data-testid="key">${shown(m.key, fmt)}</td>
    <td class="data" data-testid="value">${shown(m.value, fmt)}</td><td class="data">${m.headers.map((h) => `${esc(h.key)}=${shown(h.value, fmt)}`).join("<br>")}</td></tr>`).join("");
  const base = `#/browse/${encodeURIComponent(topicName)}/${partition}`;
  const opt = (f) => `<option value="${f}"${f === fmt ? " selected" : ""}>${f}</option>`;
  return `<h1>Messages of ${esc(topicName)} / partition ${esc(partition)}</h1>
    <p class="muted">log start <span data-testid="log-start">${r.log_start_offset}</span>, log end <span data-testid="log-end">${r.log_end_offset}</span></p>
    <div class="controls">
      <label>Newest <input id="limit" type="number" min="1" max="500" value="${esc(limit)}" style="width:6em"></label>
      <label>Show as <select id="fmt">${["text", "hex", "avro"].map(opt).join("")}</select></label>
    </div>
    <table data-testid="records-table"><tr><th class="num">Offset</th><th>Timestamp</th><th>Key</th><th>Value</th><th>Headers</th></tr>${rows}</table>
    <script type="text/plain" id="browse-base">${esc(base)}</script>`;
}

function wireBrowseControls() {
  const base = document.getElementById("browse-base");
  if (!base) return;
  const go = () => { location.hash = `${base.textContent}?limit=${document.getElementById("limit").value}&fmt=${document.getElementById("fmt").value}`; };
  document.getElementById("limit").addEventListener("change", go);
  document.getElementById("fmt").addEventListener("change", go);
}

async function render() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || "overview";
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === (section === "browse" ? "topics" : section)));
  let html;
  try {
    if (section === "topics" && parts[1]) html = await topic(parts[1]);
    else if (section === "topics") html = await topics();
    else if (section === "groups" && parts[1]) html = await group(parts[1]);
    else if (section === "groups") html = await groups();
    else if (section === "browse") html = await browse(parts[1], parts[2], params);
    else html = await overview();
    document.getElementById("status").innerHTML = `<span class="ok">● connected</span> ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    html = `<p class="bad" data-testid="error">${esc(e.message)}</p>`;
    document.getElementById("status").innerHTML = '<span class="bad">● error</span>';
  }
  // Keep the browser's form state: do not re-render the message browser on the timer.
  view.innerHTML = html;
  view.dataset.loaded = location.hash || "#/";
  wireBrowseControls();
}

function schedule() {
  clearInterval(timer);
  timer = setInterval(() => { if (!location.hash.startsWith("#/browse")) render(); }, REFRESH_MS);
}

window.addEventListener("hashchange", () => { render(); schedule(); });
render();
schedule();
