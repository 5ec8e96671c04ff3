// The msstorm dashboard: polls /dashboard/api/state once a second with the monitor
// token in a header, draws plain SVG. Nothing here comes from a third party.
"use strict";

const STATE = "api/state";
const OPERATIONS = "api/operations";
const REFRESH_MS = 1000;
const HISTORY_S = 300; // what the time charts keep
const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 200, PAD = { left: 52, right: 12, top: 10, bottom: 24 };

let token = null;
let timer = null;
let inFlight = false;
const samples = []; // {t, clients, connects, disconnects}
const operations = new Map(); // op id -> its latest entry (finished ones kept)

const $ = (id) => document.getElementById(id);

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "-";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function percent(fraction) { return `${(100 * (fraction || 0)).toFixed(1)} %`; }

// -- the token ------------------------------------------------------------------

function tokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const found = fragment.get("token");
  // Out of the address bar (and of what a screenshot or a bookmark would keep).
  if (found) window.history.replaceState(null, "", window.location.pathname);
  return found;
}

function showLogin(message) {
  token = null;
  if (timer) { clearTimeout(timer); timer = null; }
  $("storm").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus(message ? "refused" : "not connected", "down");
}

function watch(given) {
  token = given;
  $("login-error").textContent = "";
  poll();
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind || ""}`;
}

// -- polling ---------------------------------------------------------------------

async function poll() {
  if (!token) return;
  timer = setTimeout(poll, REFRESH_MS);
  if (inFlight) return;
  inFlight = true;
  try {
    const response = await fetch(STATE, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    if (response.status === 401) {
      showLogin("invalid monitor token: the server refused it");
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    $("login").hidden = true;
    $("storm").hidden = false;
    render(state);
    setStatus(`live, ${new Date(state.now).toLocaleTimeString()}`, "live");
  } catch (error) {
    setStatus(`server unreachable (${error.message})`, "down");
  } finally {
    inFlight = false;
  }
}

// -- rendering -------------------------------------------------------------------

function render(state) {
  const cluster = state.cluster, totals = state.totals;
  $("where").textContent = `${cluster.workers} worker${cluster.workers === 1 ? "" : "s"}, ` +
    `${Object.keys(totals.nodes).length} node(s), served by ${state.worker}`;
  $("clients").textContent = fmt(cluster.clients);
  $("clients-sub").textContent = `${fmt(totals.connections)} connections`;
  $("connects").textContent = fmt(totals.connectsPerSec, 1);
  $("disconnects-sub").textContent = `${fmt(totals.disconnectsPerSec, 1)} disconnects / s`;
  $("transports").textContent = `${fmt(totals.websocket)} ws`;
  $("transports-sub").textContent = `${fmt(totals.polling)} long-polling`;
  $("cpu").textContent = percent(totals.cpu);
  $("cpu-sub").textContent = "of one core, all workers";
  $("memory").textContent = bytes(totals.rss);
  $("memory-sub").textContent = `${bytes(totals.rssPerConnection)} per connection`;
  const refusedTotal = Object.values(totals.refused).reduce((a, b) => a + b, 0);
  $("refused").textContent = fmt(refusedTotal);
  $("refused-sub").textContent = `${Object.keys(totals.refused).length} kinds`;

  samples.push({ t: state.now, clients: cluster.clients, connects: totals.connectsPerSec,
    disconnects: totals.disconnectsPerSec });
  while (samples.length && samples[0].t < state.now - HISTORY_S * 1000) samples.shift();

  for (const entry of state.operations.finished) operations.set(entry.op, entry);
  for (const entry of state.operations.running) operations.set(entry.op, entry);
  while (operations.size > 200) operations.delete(operations.keys().next().value);

  rows("workers", Object.entries(cluster.perWorker).map(([tag, w]) => [
    tag, w.node, w.pid, fmt(w.clients), fmt(w.connections), fmt(w.polling),
    fmt(w.connectsPerSec, 1), fmt(w.disconnectsPerSec, 1), percent(w.cpu), bytes(w.rss),
    bytes(w.rssPerConnection),
  ]));
  rows("nodes", Object.entries(totals.nodes).map(([node, n]) => [node, n.workers, fmt(n.clients)]));
  const refusals = Object.entries(totals.refused).sort();
  rows("refusals", refusals.length ? refusals.map(([k, n]) => [k, fmt(n)]) : [["none", "0"]]);
  renderOperations(state);
  renderDepths(state.tree);
  lineChart($("chart-clients"), [{ points: samples.map((h) => [h.t, h.clients]), color: "var(--p50)" }], false);
  lineChart($("chart-rates"), [
    { points: samples.map((h) => [h.t, h.connects]), color: "var(--ok)" },
    { points: samples.map((h) => [h.t, h.disconnects]), color: "var(--bad)" },
  ], false);
  const ops = [...operations.values()].filter((e) => e.summary && e.summary.received > 0);
  const when = (e) => e.endedAt || state.now;
  for (const [id, metric] of [["chart-rtt", "rtt"], ["chart-delay", "pingDelay"]]) {
    lineChart($(id), ["p50", "p90", "p99"].map((p, i) => ({
      points: ops.map((e) => [when(e), e.summary[metric][p]]).filter((pt) => pt[1] !== null),
      color: ["var(--p50)", "var(--p90)", "var(--p99)"][i], dots: true,
    })), true);
  }
  renderDistribution(state.distribution);
}

function rows(tableId, data) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...data.map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }));
  return body;
}

function stateOf(entry) {
  if (!entry.done) return "running";
  if (entry.timedOut) return "timed out";
  return entry.summary.lost > 0 ? "lost" : "ok";
}

function renderOperations(state) {
  const entries = [...state.operations.running].reverse().concat([...state.operations.finished].reverse());
  const body = rows("operations", entries.map((e) => {
    const s = e.summary, expected = s.expected || 0;
    const bar = document.createElement("progress");
    bar.max = Math.max(expected, 1);
    bar.value = s.received + s.lost;
    const elapsed = e.done ? s.elapsedMs : state.now - e.startedAt;
    return [e.op, e.type === "tree" ? `tree:${e.treeLeaves}` : e.type, stateOf(e), fmt(expected),
      fmt(s.received), fmt(s.lost), bar, fmt(elapsed, 1), fmt(s.rtt.p50), fmt(s.rtt.p90),
      fmt(s.rtt.p99), fmt(s.rtt.max), fmt(s.pingDelay.p50), fmt(s.pingDelay.p99)];
  }));
  for (const tr of body.rows) {
    const cell = tr.cells[2];
    cell.className = cell.textContent === "ok" ? "ok" : cell.textContent === "running" ? "" : "bad";
  }
}

function renderDepths(tree) {
  if (!tree) { rows("depths", []); depthChart([]); return; }
  $("depth-title").textContent = `tree:${tree.treeLeaves} RTT by depth, ms (op ${tree.op})`;
  rows("depths", tree.depths.map((d) => [d.depth, fmt(d.pokes), fmt(d.rtt.p50), fmt(d.rtt.p90),
    fmt(d.rtt.p99), fmt(d.rtt.max), fmt(d.pingDelay.p50)]));
  depthChart(tree.depths);
}

// -- charts (plain SVG) --------------------------------------------------------------

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function ticks(low, high, log) {
  if (log) {
    const out = [];
    for (let e = Math.floor(Math.log10(low)); e <= Math.ceil(Math.log10(high)); e++) out.push(10 ** e);
    return out;
  }
  const step = niceStep((high - low) / 4);
  const out = [];
  for (let v = Math.ceil(low / step) * step; v <= high + 1e-9; v += step) out.push(v);
  return out;
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * power) return m * power;
  return 10 * power;
}

function frame(svg, yLow, yHigh, log, xLabels) {
  svg.replaceChildren();
  const y = (v) => {
    const f = log ? (Math.log10(v) - Math.log10(yLow)) / (Math.log10(yHigh) - Math.log10(yLow))
      : (v - yLow) / (yHigh - yLow || 1);
    return H - PAD.bottom - f * (H - PAD.top - PAD.bottom);
  };
  for (const v of ticks(yLow, yHigh, log)) {
    if (v < yLow || v > yHigh) continue;
    svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "axis" }));
    svg.append(el("text", { x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end" }, fmtTick(v)));
  }
  for (const [x, label] of xLabels) svg.append(el("text", { x, y: H - 6, "text-anchor": "middle" }, label));
  return y;
}

function fmtTick(v) {
  if (v >= 1e6) return `${v / 1e6}M`;
  if (v >= 1e3) return `${v / 1e3}k`;
  return `${+v.toPrecision(3)}`;
}

function lineChart(svg, series, log) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) { svg.replaceChildren(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "nothing yet")); return; }
  const xs = all.map((p) => p[0]);
  let ys = all.map((p) => p[1]);
  if (log) ys = ys.filter((v) => v > 0);
  const xLow = Math.min(...xs), xHigh = Math.max(...xs, xLow + 1000);
  let yLow = log ? Math.max(Math.min(...ys, 1), 1e-3) : 0;
  let yHigh = Math.max(...ys, log ? yLow * 10 : 1);
  if (log) { yLow = 10 ** Math.floor(Math.log10(yLow)); yHigh = 10 ** Math.ceil(Math.log10(yHigh)); }
  const x = (t) => PAD.left + (t - xLow) / (xHigh - xLow) * (W - PAD.left - PAD.right);
  const labels = [[PAD.left, new Date(xLow).toLocaleTimeString()], [W - PAD.right - 30, new Date(xHigh).toLocaleTimeString()]];
  const y = frame(svg, yLow, yHigh, log, labels);
  for (const s of series) {
    const pts = s.points.filter((p) => !log || p[1] > 0);
    if (!pts.length) continue;
    svg.append(el("polyline", { points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
      fill: "none", stroke: s.color, "stroke-width": 1.5 }));
    if (s.dots) for (const p of pts) svg.append(el("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: s.color }));
  }
}

function barChart(svg, bars, xLabels) {
  if (!bars.length) { svg.replaceChildren(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no answers yet")); return; }
  const high = Math.max(...bars.map((b) => b.value), 1);
  const y = frame(svg, 0, high, false, xLabels(bars));
  const width = (W - PAD.left - PAD.right) / bars.length;
  bars.forEach((b, i) => {
    svg.append(el("rect", { x: PAD.left + i * width + 1, y: y(b.value), width: Math.max(width - 2, 1),
      height: H - PAD.bottom - y(b.value), fill: b.color || "var(--bar)" }, undefined));
    svg.lastChild.append(el("title", {}, b.title));
  });
}

function renderDistribution(shown) {
  const svg = $("chart-dist");
  if (!shown) { barChart(svg, [], () => []); return; }
  $("dist-title").textContent = `RTT distribution, ms (op ${shown.op}, ${shown.type}${shown.done ? "" : ", running"})`;
  const bins = shown.rtt;
  if (!bins.length) { barChart(svg, [], () => []); return; }
  const first = bins[0], last = bins[bins.length - 1];
  // Every bin between the first and the last, empty ones too, so the x axis is log-spaced.
  const bars = [];
  let low = first[0];
  const ratio = first[1] / first[0];
  const byLow = new Map(bins.map((b) => [b[0].toPrecision(6), b]));
  while (low <= last[0] * 1.0001) {
    const bin = byLow.get(low.toPrecision(6));
    bars.push({ value: bin ? bin[2] : 0, title: `${fmt(low)}..${fmt(low * ratio)} ms: ${bin ? bin[2] : 0}` , low });
    low *= ratio;
  }
  barChart(svg, bars, (bs) => {
    const width = (W - PAD.left - PAD.right) / bs.length;
    const step = Math.max(1, Math.ceil(bs.length / 6));
    return bs.filter((_, i) => i % step === 0).map((b) => [PAD.left + bs.indexOf(b) * width + width / 2, fmtTick(b.low)]);
  });
}

function depthChart(depths) {
  const svg = $("chart-depth");
  const bars = depths.map((d) => ({ value: d.rtt.p50, title: `depth ${d.depth}: p50 ${fmt(d.rtt.p50)} ms, p99 ${fmt(d.rtt.p99)} ms`, depth: d.depth }));
  barChart(svg, bars, (bs) => {
    const width = (W - PAD.left - PAD.right) / bs.length;
    return bs.map((b, i) => [PAD.left + i * width + width / 2, String(b.depth)]);
  });
}

// -- starting operations -------------------------------------------------------------

async function start(event) {
  event.preventDefault();
  const type = $("op-type").value;
  const request = { type };
  if (type === "tree") request.treeLeaves = Number($("op-leaves").value);
  if (type === "unicast" && $("op-dest").value.trim()) request.destId = $("op-dest").value.trim();
  const answerBox = $("op-answer");
  answerBox.className = "";
  answerBox.textContent = "starting...";
  try {
    const response = await fetch(OPERATIONS, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const answer = await response.json();
    if (answer.error) {
      answerBox.className = "error";
      answerBox.textContent = `refused: ${answer.error.message} (${answer.error.code})`;
    } else {
      answerBox.textContent = `started ${answer.op}, ${fmt(answer.expected)} answers expected`;
    }
  } catch (error) {
    answerBox.className = "error";
    answerBox.textContent = `could not start it: ${error.message}`;
  }
}

function updateForm() {
  const type = $("op-type").value;
  $("op-leaves").disabled = type !== "tree";
  $("op-dest").disabled = type !== "unicast";
}

window.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    watch($("token").value.trim());
  });
  $("start-form").addEventListener("submit", start);
  $("op-type").addEventListener("change", updateForm);
  updateForm();
  const given = tokenFromFragment();
  if (given) watch(given); else showLogin("");
});
