// qstream dashboard: polls the control API and the Prometheus endpoint once
// a second and draws what the WebSocket sink streams. No library: canvas
// line charts drawn here. window.qstreamDashboard exposes counters for tests.
"use strict";

const MAX_POINTS = 300;     // per symbol and series
const MAX_SAMPLES = 120;    // seconds of throughput and latency
const MAX_ROWS = 50;        // window rows, alerts, news items

const el = (id) => document.getElementById(id);
const state = {
  cfg: null,
  stream: { state: "?" },
  ws: null,
  wsOpen: false,
  symbols: new Map(),       // name -> {ts:[], price:[], sma:[], ema:[], vwap:[], rsi:[], keys:{}}
  selected: "",
  throughput: [],           // {t, v}
  latency: [],              // {t, p50, p99, p999}
  lastMetrics: null,        // {t, messages, buckets: Map(le -> count)}
  counts: { indicators: 0, windows: 0, patterns: 0, news: 0, events: 0, movements: 0, metrics: 0, polls: 0 },
  errors: 0,
};

window.qstreamDashboard = {
  stats: () => ({ ...state.counts, ws: state.wsOpen, state: state.stream.state, symbols: state.symbols.size,
    points: state.selected ? state.symbols.get(state.selected).ts.length : 0,
    throughputSamples: state.throughput.length, latencySamples: state.latency.length, errors: state.errors }),
};

function showError(msg) {
  el("error").textContent = msg || "";
  if (msg) state.errors++;
}

async function api(path, method) {
  const r = await fetch(state.cfg.api + path, { method: method || "GET", headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || (r.status + " " + r.statusText));
  return body;
}

// --- stream state and control ---------------------------------------------

async function pollStream() {
  try {
    const streams = await api("/streams");
    const s = streams.find((x) => x.id === state.cfg.stream) || streams[0];
    if (s) {
      state.stream = s;
      el("stream-name").textContent = s.name || s.id;
      const b = el("stream-state");
      b.textContent = s.state;
      b.className = "badge " + s.state;
      el("pause").disabled = s.state !== "running";
      el("resume").disabled = s.state !== "paused";
    }
    renderStreams(streams);
    state.counts.polls++;
  } catch (e) {
    showError("streams: " + e.message);
  }
}

// renderStreams lists every stream with its state and its own pause and
// resume buttons (the header's act on the dashboard's stream).
function renderStreams(streams) {
  const body = el("streams").tBodies[0];
  body.textContent = "";
  for (const s of streams) {
    const tr = document.createElement("tr");
    tr.dataset.stream = s.id;
    for (const v of [s.name && s.name !== s.id ? s.id + " (" + s.name + ")" : s.id, null, s.messages, s.published]) {
      const td = document.createElement("td");
      if (v === null) {
        const b = document.createElement("span");
        b.className = "badge " + s.state;
        b.textContent = s.state;
        td.appendChild(b);
      } else {
        td.textContent = String(v);
      }
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    for (const action of ["pause", "resume"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = action === "pause" ? "Pause" : "Resume";
      b.className = "stream-" + action;
      b.disabled = action === "pause" ? s.state !== "running" : s.state !== "paused";
      b.addEventListener("click", () => control(action, s.id));
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

async function control(action, id) {
  try {
    await api("/streams/" + encodeURIComponent(id || state.cfg.stream) + "/" + action, "POST");
    showError("");
    await pollStream();
  } catch (e) {
    showError(action + ": " + e.message);
  }
}

// --- Prometheus metrics -----------------------------------------------------

// parseMetrics sums qstream_messages_total over its labels and the
// qstream_latency_seconds buckets of the end-to-end stage (all stages if
// none is called so) by upper bound.
function parseMetrics(text) {
  let messages = 0;
  const buckets = new Map();
  let stageSeen = new Set();
  const lines = text.split("\n");
  for (const line of lines) {
    if (line.startsWith("qstream_latency_seconds_bucket{")) {
      const m = line.match(/stage="([^"]*)"/);
      if (m) stageSeen.add(m[1]);
    }
  }
  const stage = stageSeen.has("e2e") ? "e2e" : stageSeen.has("sink") ? "sink" : null;
  for (const line of lines) {
    if (line.startsWith("#") || !line) continue;
    const sp = line.lastIndexOf(" ");
    const name = line.slice(0, sp), value = Number(line.slice(sp + 1));
    if (name.startsWith("qstream_messages_total")) {
      messages += value;
    } else if (name.startsWith("qstream_latency_seconds_bucket{")) {
      const st = name.match(/stage="([^"]*)"/), le = name.match(/le="([^"]*)"/);
      if (!le || (stage && (!st || st[1] !== stage))) continue;
      const bound = le[1] === "+Inf" ? Infinity : Number(le[1]);
      buckets.set(bound, (buckets.get(bound) || 0) + value);
    }
  }
  return { messages, buckets };
}

// quantile of the observations between two cumulative bucket snapshots.
function quantile(q, prev, cur) {
  const bounds = [...cur.keys()].sort((a, b) => a - b);
  const total = (cur.get(Infinity) || 0) - ((prev && prev.get(Infinity)) || 0);
  if (total <= 0) return null;
  let lower = 0, below = 0;
  for (const b of bounds) {
    const c = cur.get(b) - ((prev && prev.get(b)) || 0);
    if (c >= q * total) {
      if (b === Infinity) return lower;
      const inBucket = c - below;
      const f = inBucket > 0 ? (q * total - below) / inBucket : 1;
      return lower + (b - lower) * f;
    }
    lower = b === Infinity ? lower : b;
    below = c;
  }
  return lower;
}

async function pollMetrics() {
  try {
    const r = await fetch(state.cfg.metrics);
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const m = parseMetrics(await r.text());
    const now = Date.now() / 1000;
    const prev = state.lastMetrics;
    if (prev) {
      const dt = now - prev.t;
      const rate = Math.max(0, (m.messages - prev.messages) / dt);
      push(state.throughput, { t: now, v: rate }, MAX_SAMPLES);
      el("rate-now").textContent = fmt(rate) + " msg/s, " + fmt(m.messages) + " in all";
      const p50 = quantile(0.5, prev.buckets, m.buckets);
      if (p50 !== null) {
        push(state.latency, { t: now, p50, p99: quantile(0.99, prev.buckets, m.buckets), p999: quantile(0.999, prev.buckets, m.buckets) }, MAX_SAMPLES);
      }
    }
    state.lastMetrics = { t: now, messages: m.messages, buckets: m.buckets };
    state.counts.metrics++;
    drawThroughput();
    drawLatency();
  } catch (e) {
    showError("metrics: " + e.message);
  }
}

// --- live outputs -----------------------------------------------------------

function connect() {
  if (!state.cfg.ws) return;
  const u = new URL(state.cfg.ws);
  if (["0.0.0.0", "[::]", "127.0.0.1", "localhost"].includes(u.hostname)) u.hostname = location.hostname;
  let url = u.toString();
  if (state.cfg.token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(state.cfg.token);
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onopen = () => {
    state.wsOpen = true;
    setBadge(true);
    ws.send(JSON.stringify({ op: "subscribe", channels: ["indicators", "windows", "patterns", "news", "events", "movements"], symbols: ["*"] }));
  };
  ws.onclose = () => {
    state.wsOpen = false;
    setBadge(false);
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    switch (m.channel) {
      case "indicators": onIndicators(m); break;
      case "windows": onWindow(m); break;
      case "patterns": onPattern(m); break;
      case "news": onNews(m); break;
      case "events": onEvent(m); break;
      case "movements": onMovement(m); break;
    }
  };
}

function setBadge(on) {
  const b = el("ws-state");
  b.textContent = on ? "live: on" : "live: off";
  b.className = "badge " + (on ? "on" : "off");
}

function symbolSeries(name) {
  let s = state.symbols.get(name);
  if (!s) {
    s = { ts: [], price: [], sma: [], ema: [], vwap: [], rsi: [], keys: {} };
    state.symbols.set(name, s);
    const o = document.createElement("option");
    o.value = o.textContent = name;
    el("symbol").appendChild(o);
    if (!state.selected) {
      state.selected = name;
      el("symbol").value = name;
    }
  }
  return s;
}

// onIndicators keeps the trade's price and the first SMA, EMA, session VWAP
// and RSI of the line (their names say their periods).
function onIndicators(m) {
  state.counts.indicators++;
  const s = symbolSeries(m.symbol);
  for (const k of Object.keys(m)) {
    for (const p of ["sma", "ema", "rsi"]) {
      if (k.startsWith(p + "_") && !s.keys[p]) s.keys[p] = k;
    }
  }
  push(s.ts, m.ts / 1e9, MAX_POINTS);
  push(s.price, m.price, MAX_POINTS);
  push(s.sma, s.keys.sma ? m[s.keys.sma] : null, MAX_POINTS);
  push(s.ema, s.keys.ema ? m[s.keys.ema] : null, MAX_POINTS);
  push(s.vwap, m.vwap === undefined ? null : m.vwap, MAX_POINTS);
  push(s.rsi, s.keys.rsi ? m[s.keys.rsi] : null, MAX_POINTS);
  if (m.symbol === state.selected) dirty = true;
}

function onWindow(m) {
  state.counts.windows++;
  const v = typeof m.value === "object" && m.value !== null ? "c " + fmt(m.value.close) : fmt(m.value);
  prependRow(el("windows").tBodies[0], [m.window, m.symbol, time(m.end), m.count, v, m.timing]);
}

function onPattern(m) {
  state.counts.patterns++;
  const d = Object.entries(m.details || {}).map(([k, v]) => k + "=" + (typeof v === "number" ? fmt(v) : v)).join(" ");
  prependItem(el("patterns"), `<b>${esc(m.pattern)}</b> <span class="dim">${esc(m.type)}</span> ${esc(m.symbol)} ` +
    `<span class="dim">${time(m.ts)}</span> conf ${fmt(m.confidence)} <span class="dim">${esc(d)}</span>`);
}

function onNews(m) {
  state.counts.news++;
  const cls = m.sentiment > 0.05 ? "pos" : m.sentiment < -0.05 ? "neg" : "dim";
  const ents = (m.entities || []).map((e) => e.text).join(", ");
  const evs = (m.events || []).map((e) => e.type).join(", ");
  prependItem(el("news"), `<span class="${cls}">${m.sentiment >= 0 ? "+" : ""}${fmt(m.sentiment)}</span> ` +
    `<b>${esc((m.symbols || []).join(" "))}</b> <span class="dim">${time(m.ts)}</span> ${esc(ents)}` +
    (evs ? ` <span class="dim">[${esc(evs)}]</span>` : ""));
}

function onEvent(m) {
  state.counts.events++;
  prependItem(el("news"), `<span class="dim">${esc(m.event)}</span> <b>${esc(m.symbol || "")}</b> ` +
    `<span class="dim">${time(m.ts)}</span> ${esc(JSON.stringify(m.payload || {}))}`);
}

function onMovement(m) {
  state.counts.movements++;
  prependItem(el("patterns"), `<b>${esc(m.movement)}</b> <span class="dim">movement</span> ${esc(m.symbol)} ` +
    `<span class="${m.direction === "up" ? "pos" : "neg"}">${fmt(m.change_pct)}%</span> <span class="dim">${time(m.ts)}</span>`);
}

// --- drawing ----------------------------------------------------------------

const COLORS = { price: "#d8dee4", sma: "#58a6ff", ema: "#d29922", vwap: "#a371f7", rsi: "#3fb950", p50: "#58a6ff", p99: "#d29922", p999: "#f85149", v: "#3fb950" };
let dirty = false;

function drawChart(canvas, xs, series, opts) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 56, R = 8, T = 8, B = 18;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#7d8a96";
  if (xs.length < 2) {
    ctx.fillText("waiting for data", L, H / 2);
    return;
  }
  let lo = opts.min, hi = opts.max;
  if (lo === undefined || hi === undefined) {
    lo = Infinity; hi = -Infinity;
    for (const s of series) for (const v of s.data) if (v !== null && v !== undefined && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi === lo) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.05; hi += pad; lo = lo >= 0 ? Math.max(0, lo - pad) : lo - pad;
  }
  const x0 = xs[0], x1 = xs[xs.length - 1] === x0 ? x0 + 1 : xs[xs.length - 1];
  const X = (x) => L + (W - L - R) * (x - x0) / (x1 - x0);
  const Y = (y) => T + (H - T - B) * (1 - (y - lo) / (hi - lo));
  ctx.strokeStyle = "#26313c";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = lo + (hi - lo) * i / 4;
    ctx.beginPath(); ctx.moveTo(L, Y(y)); ctx.lineTo(W - R, Y(y)); ctx.stroke();
    ctx.fillText(opts.unit ? opts.unit(y) : fmt(y), 2, Y(y) + 4);
  }
  for (const g of opts.guides || []) {
    ctx.strokeStyle = "#7d8a96"; ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(L, Y(g)); ctx.lineTo(W - R, Y(g)); ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5;
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < xs.length; i++) {
      const v = s.data[i];
      if (v === null || v === undefined || !isFinite(v)) { pen = false; continue; }
      if (pen) ctx.lineTo(X(xs[i]), Y(v)); else { ctx.moveTo(X(xs[i]), Y(v)); pen = true; }
    }
    ctx.stroke();
  }
}

function drawThroughput() {
  drawChart(el("throughput"), state.throughput.map((s) => s.t), [{ data: state.throughput.map((s) => s.v), color: COLORS.v }], { unit: fmt });
}

function drawLatency() {
  const xs = state.latency.map((s) => s.t);
  drawChart(el("latency"), xs, ["p50", "p99", "p999"].map((k) => ({ data: state.latency.map((s) => s[k]), color: COLORS[k] })), { unit: dur });
}

function drawPrice() {
  const s = state.symbols.get(state.selected);
  if (!s) return;
  const series = ["price", "sma", "ema", "vwap"].map((k) => ({ data: s[k], color: COLORS[k], width: k === "price" ? 1.5 : 1 }));
  drawChart(el("price"), s.ts, series, {});
  drawChart(el("rsi"), s.ts, [{ data: s.rsi, color: COLORS.rsi }], { min: 0, max: 100, guides: [30, 70] });
  el("legend").textContent = ["price", s.keys.sma, s.keys.ema, "vwap", s.keys.rsi].filter(Boolean).join(" · ");
}

// --- helpers ----------------------------------------------------------------

function push(a, v, max) { a.push(v); if (a.length > max) a.splice(0, a.length - max); }
function fmt(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100) return v.toFixed(1);
  return Number(v.toPrecision(4)).toString();
}
function dur(s) {
  if (s === null || s === undefined) return "–";
  if (s >= 1) return s.toFixed(2) + "s";
  if (s >= 1e-3) return (s * 1e3).toFixed(1) + "ms";
  return (s * 1e6).toFixed(0) + "µs";
}
function time(ns) { return new Date(ns / 1e6).toISOString().slice(11, 23); }
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
function prependRow(tbody, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  tbody.insertBefore(tr, tbody.firstChild);
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
}
function prependItem(ul, html) {
  const li = document.createElement("li");
  li.innerHTML = html;
  ul.insertBefore(li, ul.firstChild);
  while (ul.children.length > MAX_ROWS) ul.removeChild(ul.lastChild);
}

// --- start ------------------------------------------------------------------

async function start() {
  state.cfg = await (await fetch("config.json")).json();
  el("pause").onclick = () => control("pause");
  el("resume").onclick = () => control("resume");
  el("symbol").onchange = (e) => { state.selected = e.target.value; dirty = true; };
  await pollStream();
  await pollMetrics();
  setInterval(pollStream, 1000);
  setInterval(pollMetrics, 1000);
  setInterval(() => { if (dirty) { dirty = false; drawPrice(); } }, 250);
  connect();
}

start().catch((e) => showError("start: " + e.message));
