// groklab dash: polls the server's JSON routes and draws the curves with uPlot (vendored beside
// this file: hover values, drag to zoom, double-click to reset). No build step.
// The list refreshes every LIST_MS; each shown run asks only for the lines appended since its
// last answer (the server's byte-offset tokens), so a long run costs little to follow.
// Everything from a run directory is untrusted: it reaches the page as text nodes and
// attributes built here (h()), never as HTML.
"use strict";

const LIST_MS = 2000, RUN_MS = 1000, LABEL_ROW = 15;
const COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const MARK_COLOR = { train: "#1f77b4", val: "#d62728", phase: "#555", forecast: "#9467bd", slider: "#111" };
const FORECAST_LEVEL = "0.9", FORECAST_BAND = "rgba(148, 103, 189, 0.14)";  // the 80 % interval, shaded
const SOURCES = [["metrics", "m"], ["measures", "s"], ["analysis", "a"]];  // answer key, token parameter
const S = {
  list: null,          // last /api/list answer
  listAt: 0,           // when that request was sent
  view: null,          // {kind: "run"|"sweep"|"result", path}
  overlay: [],         // run paths drawn with the selected run (the selected one first)
  runs: {},            // path -> {m, s, a, metrics: [], measures: [], analysis: [], detail, at}
  sweep: null,         // last /api/sweep answer
  logx: true,
};

const $ = (id) => document.getElementById(id);

// An element with attributes and children; strings become text nodes, so no value is parsed as HTML.
// summary.json's cost (groklab.runs.cost) in one line; an estimate says so, a missing value is –
function costLine(c) {
  const n = (v, d) => (isNum(v) ? Number(v).toPrecision(d) : "–");
  const energy = isNum(c.joules) ? `${n(c.joules, 3)} J (${String(c.method)})` : "energy –";
  return `cost ${n(c.flops / 1e9, 3)} GFLOP · ${n(c.cpu_seconds, 3)} CPU s · ${energy} · ${n(c.co2_g, 2)} g CO2e`;
}

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const fmt = (v, d = 3) => (v === null || v === undefined) ? "–" : (isNum(v) ? (Number.isInteger(v) ? String(v) : v.toFixed(d)) : String(v));
const fmtVal = (v) => !isNum(v) ? "–" : Number.isInteger(v) ? v.toLocaleString("en") : (Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3) && v !== 0 ? v.toExponential(3) : String(+v.toPrecision(4));
const fileUrl = (p, v) => "/files/" + p.split("/").map(encodeURIComponent).join("/") + (v ? "?v=" + encodeURIComponent(v) : "");
const link = (p, text) => h("a", { href: fileUrl(p), target: "_blank", rel: "noopener" }, text);

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  let body;
  try { body = await r.json(); } catch (e) { throw new Error(`bad answer from ${url} (${r.status})`); }
  if (!r.ok) { const err = new Error(body.error || `HTTP ${r.status}`); err.status = r.status; throw err; }
  return body;
}

function banner(msg) { const b = $("banner"); b.hidden = !msg; b.textContent = msg || ""; }

// ---- selection, kept in the address (#run=PATH&with=A|B) so a reload shows the same thing ----
function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  for (const kind of ["run", "sweep", "result"]) if (q.get(kind)) S.view = { kind, path: q.get(kind) };
  S.overlay = S.view && S.view.kind === "run" ? [S.view.path, ...(q.get("with") || "").split("|").filter((p) => p && p !== S.view.path)] : [];
}
function writeHash() {
  if (!S.view) return;
  const q = new URLSearchParams();
  q.set(S.view.kind, S.view.path);
  if (S.view.kind === "run" && S.overlay.length > 1) q.set("with", S.overlay.slice(1).join("|"));
  history.replaceState(null, "", "#" + q.toString());
}
function select(kind, path) {
  S.view = { kind, path };
  if (kind === "run") S.overlay = [path, ...S.overlay.filter((p) => p !== path)];
  writeHash(); renderList(); showView(); if (kind === "run") pollRuns(); else if (kind === "sweep") loadSweep();
}
function toggleOverlay(path, on) {
  if (!on && S.view && S.view.kind === "run" && S.view.path === path) { renderList(); return; }  // the shown run stays drawn
  S.overlay = S.overlay.filter((p) => p !== path);
  if (on) S.overlay.push(path);
  if (!S.view || S.view.kind !== "run") { S.view = { kind: "run", path }; S.overlay = [path]; }
  writeHash(); renderList(); showView(); pollRuns();
}
const colorOf = (path) => COLORS[Math.max(0, S.overlay.indexOf(path)) % COLORS.length];
const selected = (kind, path) => !!S.view && S.view.kind === kind && S.view.path === path;

// ---- the side bar ----
// A shown run's entry comes from its own answer when that is newer than the list (polled every
// RUN_MS, the list every LIST_MS), so the side bar never says "running" after the header says done.
function entry(r) {
  const R = S.runs[r.path], D = R && R.detail;
  if (!D || R.at < S.listAt) return r;
  const { status, step, steps, val_acc, train_acc, phase, report, errors } = D;
  return { ...r, status, step, steps, val_acc, train_acc, phase, report, errors };
}

function renderList() {
  const L = S.list;
  if (!L) return;
  $("root").textContent = L.root;
  const f = $("filter").value.trim().toLowerCase();
  const runs = L.runs.map(entry).filter((r) => !f || (r.path + " " + r.task + " " + r.preset).toLowerCase().includes(f));
  $("nruns").textContent = `(${L.runs.length})`;
  $("runs").replaceChildren(...runs.map((r) => {
    const on = S.overlay.includes(r.path), status = r.errors.length ? "error" : r.status;
    const prog = isNum(r.step) ? `step ${r.step}${isNum(r.steps) ? "/" + r.steps : ""} · val ${fmt(r.val_acc)}` : "no metrics yet";
    return h("li", { dataset: { path: r.path, status: r.status }, class: selected("run", r.path) ? "selected" : "" },
      h("input", { type: "checkbox", title: "overlay on the charts", checked: on }),
      on ? h("span", { class: "swatch", style: { background: colorOf(r.path) } }) : null,
      h("span", { class: "name" }, r.path), h("span", { class: "badge " + status }, status),
      h("div", { class: "sub" }, `${r.preset ? r.preset + " · " : ""}${r.task} · ${prog}${r.phase ? " · " + r.phase : ""}`));
  }));
  if (!runs.length) $("runs").append(h("li", { class: "muted" }, L.runs.length ? "no run matches the filter" : "no run directory (config.json) under the root yet"));
  $("nsweeps").textContent = `(${L.sweeps.length})`;
  $("sweeps").replaceChildren(...L.sweeps.map((s) => h("li", { dataset: { path: s.path }, class: selected("sweep", s.path) ? "selected" : "" },
    h("span", { class: "name" }, s.path), (s.errors || []).length ? h("span", { class: "badge error", title: s.errors.join("; ") }, "error") : null,
    h("div", { class: "sub" }, `${isNum(s.trials) ? s.trials + " trials" : (s.errors || []).length ? s.errors[0] : "no results.csv yet"} · ${s.figures.length} figures`))));
  if (!L.sweeps.length) $("sweeps").append(h("li", { class: "muted" }, "none"));
  $("nresults").textContent = `(${L.results.length})`;
  $("results").replaceChildren(...L.results.map((s) => h("li", { dataset: { path: s.path }, class: selected("result", s.path) ? "selected" : "" },
    h("span", { class: "name" }, s.path), h("div", { class: "sub" }, s.figures.map((x) => x.name).join(", ") || "report"))));
  if (!L.results.length) $("results").append(h("li", { class: "muted" }, "none"));
}

function onListClick(kind) {
  return (ev) => {
    const li = ev.target.closest("li[data-path]");
    if (!li) return;
    if (ev.target.matches("input[type=checkbox]")) toggleOverlay(li.dataset.path, ev.target.checked);
    else select(kind, li.dataset.path);
  };
}

// ---- charts (uPlot): log or linear axes, vertical markers with labels laid out in rows ----
function tickLabel(v) {
  if (v === null || v === undefined) return "";
  const x = +v.toPrecision(3), a = Math.abs(x);
  if (a < 1e-12) return "0";
  return a >= 1e5 || a < 1e-3 ? x.toExponential().replace("e+", "e") : String(x);
}

// series: [{run, key, label, color, dash, dots, points: [[step, value], ...]}];
// opt: {logy, linx (a linear step axis whatever the header says), ymin, ymax, markers, height, forecast: {step, low, high, label} (forecastMark) or null}
// The container keeps its uPlot in el._u; new data only calls setData (keeping a zoom the user made).
function plot(el, series, opt) {
  const logx = S.logx && !opt.linx, logy = !!opt.logy;
  const xOf = (s) => (logx ? Math.max(s, 1) : s);  // step 0 sits at 1 on a log axis
  const yOk = (v) => isNum(v) && (!logy || v > 0);
  const steps = new Set();
  for (const se of series) for (const [s, v] of se.points) if (yOk(v)) steps.add(xOf(s));
  const fc = opt.forecast || null;
  if (fc && steps.size) for (const s of [fc.low, fc.step, fc.high]) steps.add(xOf(s));  // the step axis reaches the forecast
  const xs = [...steps].sort((a, b) => a - b), at = new Map(xs.map((x, i) => [x, i]));
  const data = [xs, ...series.map((se) => {
    const ys = new Array(xs.length).fill(null);
    for (const [s, v] of se.points) if (yOk(v)) ys[at.get(xOf(s))] = v;
    return ys;
  })];
  el.dataset.points = JSON.stringify(Object.fromEntries(series.map((se) => [se.run + "|" + se.key, se.points.length])));
  el._markers = [...(opt.markers || []), ...(fc ? [{ step: fc.step, label: fc.label, kind: "forecast" }] : [])];
  el._band = fc;
  const sig = JSON.stringify([logx, logy, opt.ymin, opt.ymax, series.map((se) => [se.label, se.color, !!se.dash, !!se.dots])]);
  const width = Math.max(200, el.clientWidth - 8), height = opt.height || 240;
  if (el._u && el._sig === sig) {
    if (el._u.width !== width) el._u.setSize({ width, height });
    el._u.setData(data, !el._zoomed);
    return;
  }
  if (el._u) el._u.destroy();
  el.replaceChildren();
  const strip = h("div", { class: "marks" });
  el.append(strip);
  const u = new uPlot({
    width, height,
    scales: { x: { time: false, distr: logx ? 3 : 1, range: (u, lo, hi) => (lo < hi ? [lo, hi] : [lo, lo + 1]) }, y: { distr: logy ? 3 : 1, range: isNum(opt.ymin) ? [opt.ymin, opt.ymax] : undefined } },
    axes: [{ values: (u, vals) => vals.map(tickLabel), stroke: "#555", grid: { stroke: "#eee" } },
      { size: 54, values: (u, vals) => vals.map(tickLabel), stroke: "#555", grid: { stroke: "#eee" } }],
    series: [{ label: "step", value: (u, v) => fmtVal(v) },
      ...series.map((se) => ({ label: se.label, stroke: se.color, width: 1.5, dash: se.dash ? [5, 3] : undefined, spanGaps: true,
        points: { show: !!se.dots, size: 5 }, value: (u, v) => fmtVal(v) }))],
    legend: { live: true },
    cursor: { drag: { x: true, y: false }, sync: { key: "groklab" } },
    hooks: {
      drawClear: [(u) => drawBand(u, el._band)],
      draw: [(u) => drawMarkers(u, el._markers, strip)],
      setSelect: [(u) => { if (u.select.width > 0) el._zoomed = true; }],
    },
  }, data, el);
  u.over.addEventListener("dblclick", () => { el._zoomed = false; });
  el._u = u; el._sig = sig; el._zoomed = false;
}

// The forecast's 80 % interval [low, high]: a shaded band under the curves (its predicted step is
// a dashed marker like the others), cut to the plotted steps.
function drawBand(u, fc) {
  if (!fc) return;
  const { left, top, width, height } = u.bbox, xmin = u.scales.x.min, xmax = u.scales.x.max;
  const xOf = (s) => (u.scales.x.distr === 3 ? Math.max(s, 1) : s);
  const lo = Math.max(xOf(fc.low), xmin), hi = Math.min(xOf(fc.high), xmax);
  if (!(lo <= hi)) return;
  const a = Math.max(left, u.valToPos(lo, "x", true)), b = Math.min(left + width, u.valToPos(hi, "x", true));
  const ctx = u.ctx;
  ctx.save();
  ctx.fillStyle = FORECAST_BAND;
  ctx.fillRect(a, top, Math.max(b - a, 1), height);
  ctx.restore();
}

// The selected run's last forecast (the server's checked forecast.jsonl line) for the accuracy
// chart: {text} for the line under it, and {step, low, high, label} to draw while validation
// accuracy has not reached FORECAST_LEVEL and the forecast gives a step; null without a forecast.
function forecastMark(F) {
  if (!F || typeof F !== "object") return null;
  const pick = (k) => (F[k] && typeof F[k] === "object" && isNum(F[k][FORECAST_LEVEL]) ? F[k][FORECAST_LEVEL] : null);
  const p = pick("p"), at = pick("at"), reached = !!F.reached && F.reached[FORECAST_LEVEL] === true;
  const int = (v) => String(Math.round(v)), when = isNum(F.step) ? ` (at step ${int(F.step)})` : "";
  if (reached) return { text: `forecast: val ≥ ${FORECAST_LEVEL} reached${isNum(at) ? " at step " + int(at) : ""}` };
  if (p === null) return null;
  if (at === null) return { text: `forecast: val ≥ ${FORECAST_LEVEL} not expected within ${isNum(F.budget) ? int(F.budget) + " steps" : "the budget"}, P = ${p.toFixed(2)}${when}` };
  let low = pick("low"), high = pick("high");
  low = low === null ? at : Math.min(low, at); high = high === null ? at : Math.max(high, at);
  return { step: at, low, high, label: `forecast ≥ ${FORECAST_LEVEL}`,
    text: `forecast: val ≥ ${FORECAST_LEVEL} ≈ step ${int(at)} (80 %: ${int(low)}–${int(high)}), P = ${p.toFixed(2)}${when}` };
}

// Dashed vertical lines on the canvas; their labels are elements in a strip above the plot,
// each put in the first row where it does not touch the label before it, so close boundaries
// (memorization end and a threshold crossing a few steps apart) stay readable.
function drawMarkers(u, markers, strip) {
  const ctx = u.ctx, { left, top, width, height } = u.bbox, dpr = devicePixelRatio || 1;
  const xmin = u.scales.x.min, xmax = u.scales.x.max;
  const shown = markers.map((m) => ({ m, x: u.scales.x.distr === 3 ? Math.max(m.step, 1) : m.step }))
    .filter(({ x }) => x >= xmin && x <= xmax).sort((a, b) => a.x - b.x);
  ctx.save();
  ctx.setLineDash([4 * dpr, 3 * dpr]);
  ctx.lineWidth = dpr;
  for (const { m, x } of shown) {
    const px = Math.round(u.valToPos(x, "x", true)) + 0.5;
    ctx.strokeStyle = MARK_COLOR[m.kind] || MARK_COLOR.phase;
    ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + height); ctx.stroke();
  }
  ctx.restore();
  strip.replaceChildren();
  const x0 = left / dpr, right = (left + width) / dpr, rowEnd = [];
  for (const { m, x } of shown) {
    const el = h("span", { class: "mark " + m.kind, title: `${m.label} at step ${m.step}` }, `${m.label} ${fmtVal(m.step)}`);
    strip.append(el);
    const w = el.offsetWidth;
    const at = x0 + u.valToPos(x, "x");
    const lx = at + 2 + w <= right ? at + 2 : Math.max(0, at - 2 - w);  // right of its line, or left near the edge
    let row = rowEnd.findIndex((end) => end + 4 <= lx);
    if (row < 0) { row = rowEnd.length; rowEnd.push(0); }
    rowEnd[row] = lx + w;
    Object.assign(el.style, { left: lx + "px", top: row * LABEL_ROW + "px" });
  }
  strip.style.height = rowEnd.length * LABEL_ROW + "px";
}

// ---- the run view ----
function pts(records, key) { return records.filter((r) => isNum(r[key]) && isNum(r.step)).map((r) => [r.step, r[key]]); }

function renderRun() {
  const path = S.view.path, R = S.runs[path], D = R && R.detail;
  const head = $("runhead");
  if (!D) { head.replaceChildren(h("h2", {}, path), h("p", { class: "muted" }, R && R.error ? R.error : "loading…")); $("forecast").hidden = true; return; }
  const s = D.summary || {};
  head.replaceChildren(
    h("h2", {}, D.path, " ", h("span", { class: "badge " + D.status }, D.status)),
    h("div", { class: "facts" },
      h("span", {}, `${D.preset || "no preset"} · ${D.task}`),
      h("span", {}, `step ${fmt(D.step)}${isNum(D.steps) ? " / " + D.steps : ""}`),
      h("span", {}, `train ${fmt(D.train_acc)} · val ${fmt(D.val_acc)}`),
      D.phase ? h("span", {}, "phase ", h("b", {}, D.phase)) : null,
      s.message ? h("span", {}, String(s.message)) : null,
      s.cost && typeof s.cost === "object" ? h("span", { class: "cost" }, costLine(s.cost)) : null),
    h("div", { class: "facts" },
      D.report ? link(D.report, "report.html") : h("span", { class: "muted" }, "report.html is written when the run ends"),
      link(D.path + "/metrics.jsonl", "metrics.jsonl"),
      R.measures.length ? link(D.path + "/measures.jsonl", "measures.jsonl") : null,
      R.analysis.length ? link(D.path + "/analysis.jsonl", "analysis.jsonl") : null));
  const errs = [...(D.errors || []), ...(R.error ? [R.error] : [])];
  $("runerrors").hidden = !errs.length;
  $("runerrors").replaceChildren(...errs.flatMap((e, i) => (i ? [h("br"), e] : [e])));

  const acc = [], loss = [];
  const single = S.overlay.length === 1;  // one run: train blue, validation red, as in curves.png
  for (const p of S.overlay) {
    const r = S.runs[p];
    if (!r) continue;
    const c = colorOf(p), ct = single ? "#1f77b4" : c, name = single ? "" : p + " ";
    acc.push({ run: p, key: "val_acc", label: name + "validation", color: c, points: pts(r.metrics, "val_acc") });
    acc.push({ run: p, key: "train_acc", label: name + "train", color: ct, dash: true, points: pts(r.metrics, "train_acc") });
    loss.push({ run: p, key: "val_loss", label: name + "validation", color: c, points: pts(r.metrics, "val_loss") });
    loss.push({ run: p, key: "train_loss", label: name + "train", color: ct, dash: true, points: pts(r.metrics, "train_loss") });
  }
  const fc = forecastMark(D.forecast);
  $("forecast").hidden = !fc;
  $("forecast").textContent = fc ? fc.text : "";
  plot($("acc"), acc, { ymin: -0.02, ymax: 1.02, markers: D.markers, forecast: fc && isNum(fc.step) ? fc : null });
  plot($("loss"), loss, { logy: true, markers: D.markers });
  renderMeasures(path, R, D);
  insideFor(path);
  renderFigs($("figs"), D.figures, "no fig_*.png in this run (groklab analyze and GTN runs add them; the curves are above)");
  $("config").textContent = D.config ? JSON.stringify(D.config, null, 2) : "config.json unreadable";
}

// Progress measures: the live ones (measures.jsonl) and those of `groklab analyze`
// (analysis.jsonl, one point per checkpoint) on one chart per key; then the other values of
// metrics.jsonl (lr, weight norm; a GTN's meta-loss).
function renderMeasures(path, R, D) {
  const keysOf = (recs, skip) => { const ks = []; for (const r of recs) for (const k of Object.keys(r)) if (!skip.has(k) && !ks.includes(k)) ks.push(k); return ks; };
  const mkeys = keysOf([...R.measures, ...R.analysis], new Set(["step"]));
  const okeys = keysOf(R.metrics, new Set(["step", "time", "train_acc", "val_acc", "train_loss", "val_loss"]));
  const all = [...mkeys.map((k) => ["measure", k]), ...okeys.map((k) => ["metric", k])];
  const box = $("measures"), sig = JSON.stringify([all, S.logx]);
  if (box.dataset.keys !== sig) {
    box.replaceChildren(...all.map(([src, k]) => h("figure", {},
      h("figcaption", {}, k, src === "metric" ? h("span", { class: "muted" }, " (metrics.jsonl)") : null),
      h("div", { class: "small", dataset: { [src]: k } }))));
    if (!mkeys.length) box.append(h("p", { class: "muted" }, "no progress measures in this run: train.measure_every=0, or none measured yet; ",
      h("code", {}, "groklab analyze"), " adds them from the checkpoints"));
    box.dataset.keys = sig;
  }
  const color = colorOf(path);
  for (const el of box.querySelectorAll("div[data-measure], div[data-metric]")) {
    const k = el.dataset.measure || el.dataset.metric, series = [];
    if (el.dataset.metric) series.push({ run: path, key: k, label: k, color, points: pts(R.metrics, k) });
    else {
      const live = pts(R.measures, k), ana = pts(R.analysis, k);
      if (live.length) series.push({ run: path, key: k, label: "live", color, points: live });
      if (ana.length) series.push({ run: path, key: "analysis:" + k, label: "groklab analyze", color: "#555", dash: true, dots: true, points: ana });
    }
    const vals = series.flatMap((se) => se.points.map((x) => x[1]));
    const logy = vals.length > 0 && vals.every((v) => v > 0) && Math.max(...vals) / Math.min(...vals) > 100;
    plot(el, series, { logy, markers: D.markers, height: 170 });
  }
}

function renderFigs(el, figs, none) {
  const want = JSON.stringify(figs.map((f) => [f.path, f.mtime]));
  if (el.dataset.figs === want) return;  // reloading unchanged images would flicker
  el.dataset.figs = want;
  if (!figs.length) { el.replaceChildren(h("p", { class: "muted" }, none)); return; }
  el.replaceChildren(...figs.map((f) => {
    const img = h("img", { alt: f.name, src: fileUrl(f.path, f.mtime) });
    img.addEventListener("error", () => img.replaceWith("image not readable yet"));
    return h("figure", {}, h("a", { href: fileUrl(f.path, f.mtime), target: "_blank", rel: "noopener" }, img), h("figcaption", {}, f.name));
  }));
}

async function pollRun(path) {
  const R = S.runs[path] || (S.runs[path] = { m: null, s: null, a: null, metrics: [], measures: [], analysis: [], detail: null, error: null, at: 0 });
  if (R.busy) return;  // one request per run at a time, so no record is appended twice
  R.busy = true;
  const q = new URLSearchParams({ path });
  for (const [, tk] of SOURCES) if (R[tk]) q.set(tk, R[tk]);
  const sent = Date.now();
  try {
    const D = await getJSON("/api/run?" + q.toString());
    for (const [k, tk] of SOURCES) {
      const got = D[k];
      if (got.reset) R[k] = [];
      R[k].push(...got.records);
      R[tk] = got.token;
      delete D[k];
    }
    R.detail = D; R.error = null; R.at = sent;
  } catch (e) {
    R.error = e.status === 404 ? `${path}: ${e.message}` : `cannot read ${path}: ${e.message}`;
  } finally {
    R.busy = false;
  }
}

let runTimer = null;
async function pollRuns() {
  clearTimeout(runTimer);
  if (S.view && S.view.kind === "run") {
    await Promise.all(S.overlay.map(pollRun));
    if (S.view && S.view.kind === "run") { renderRun(); renderList(); }
  }
  runTimer = setTimeout(pollRuns, RUN_MS);
}

// ---- inside the model: a modular run's neurons at one checkpoint (/api/neurons) ----
// Pearce et al. 2023 (PAIR's explorable): a slider over the checkpoints; each hidden neuron's
// input weights over the operand's values as a wave and its spectrum as bars, grouped by the
// frequency that dominates it; the embedding's spectrum; accuracy with the checkpoint marked.
// While memorizing, waves are noise with flat spectra (grey); once the circuit forms, each is a
// clean wave of one frequency and they gather in a few coloured groups.
const INSIDE_MS = 10000, PLAY_MS = 700, MIXED = "#8a8a8a";
const IN = { path: null, steps: [], step: null, views: new Map(), at: 0, busy: false, playing: false, reason: null };
const freqColor = (k) => (k === null || k === undefined ? MIXED : `hsl(${Math.round((k * 137.508) % 360)}, 70%, 40%)`);

function insideFor(path) {
  if (IN.path !== path) {
    Object.assign(IN, { path, steps: [], step: null, views: new Map(), at: 0, playing: false, reason: null });
    $("inside").hidden = true;
    $("inplay").textContent = "▶ play";
  }
  if (!IN.busy && Date.now() - IN.at > INSIDE_MS) loadInside(path, IN.step);
  if (!$("inside").hidden) plotInsideAcc();
}

// One answer: the checkpoint steps (refreshed: a live run adds some) and the view of ``step``.
async function loadInside(path, step) {
  IN.busy = true;
  const q = new URLSearchParams({ path });
  if (step !== null && step !== undefined) q.set("step", String(step));
  try {
    const D = await getJSON("/api/neurons?" + q.toString());
    if (IN.path !== path) return;
    IN.at = Date.now();
    IN.reason = D.available ? null : String(D.reason || "");
    $("inside").hidden = !D.available;
    $("inside").dataset.reason = IN.reason || "";
    if (!D.available) return;
    IN.steps = D.steps.filter(isNum);
    IN.views.set(D.step, D.view);
    const slider = $("inslider");
    slider.max = String(Math.max(0, IN.steps.length - 1));
    if (IN.step === null || step === null || step === undefined) showStep(D.step);
    else slider.value = String(Math.max(0, IN.steps.indexOf(IN.step)));
    $("inerror").hidden = true;
  } catch (e) {
    if (IN.path !== path) return;
    IN.at = Date.now();
    $("inerror").hidden = false;
    $("inerror").textContent = e.message;
  } finally {
    IN.busy = false;
  }
}

// Show checkpoint ``step``: from the views already fetched, else ask for it (a later move of the
// slider wins over an answer that arrives late).
async function showStep(step) {
  IN.step = step;
  $("inslider").value = String(Math.max(0, IN.steps.indexOf(step)));
  $("instep").textContent = `checkpoint: step ${fmtVal(step)}  (${IN.steps.indexOf(step) + 1} of ${IN.steps.length})`;
  plotInsideAcc();
  if (!IN.views.has(step)) {
    const path = IN.path;
    try {
      const D = await getJSON("/api/neurons?" + new URLSearchParams({ path, step: String(step) }).toString());
      if (IN.path !== path) return;
      IN.views.set(step, D.view);
      $("inerror").hidden = true;
    } catch (e) {
      if (IN.path === path && IN.step === step) { $("inerror").hidden = false; $("inerror").textContent = e.message; }
      return;
    }
  }
  if (IN.step === step) drawInside(IN.views.get(step), step);
}

function plotInsideAcc() {
  const R = S.runs[IN.path];
  if (!R || $("inside").hidden) return;
  const series = [{ run: IN.path, key: "val_acc", label: "validation", color: "#d62728", points: pts(R.metrics, "val_acc") },
    { run: IN.path, key: "train_acc", label: "train", color: "#1f77b4", dash: true, points: pts(R.metrics, "train_acc") }];
  const mark = isNum(IN.step) ? [{ step: IN.step, label: "checkpoint", kind: "slider" }] : [];
  plot($("inacc"), series, { ymin: -0.02, ymax: 1.02, markers: mark, height: 180, linx: true });  // steps as the slider walks them
}

// A canvas sized to its CSS box at the device's pixel ratio; draw(ctx, w, h) in CSS pixels.
function paint(canvas, draw) {
  const dpr = devicePixelRatio || 1, w = canvas.clientWidth || 132, hh = canvas.clientHeight || 40;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(hh * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hh);
  draw(ctx, w, hh);
}

// A neuron's wave, scaled to its largest value. With ``k`` (its group's frequency), operand
// value i is drawn at position k·i mod n: a pure frequency-k wave becomes one smooth cycle
// (for k = 1 nothing moves), noise stays noise.
function drawWave(canvas, wave, color, k) {
  paint(canvas, (ctx, w, hh) => {
    const v = wave.map((x) => (isNum(x) ? x : 0)), n = v.length, m = Math.max(1e-12, ...v.map(Math.abs));
    const pos = v.map((_, i) => (k ? (k * i) % n : i)), order = v.map((_, i) => i).sort((a, b) => pos[a] - pos[b]);
    const y = (x) => hh / 2 - (x / m) * (hh / 2 - 2), dx = w / Math.max(1, n - 1);
    ctx.strokeStyle = "#e5e5e5"; ctx.beginPath(); ctx.moveTo(0, hh / 2); ctx.lineTo(w, hh / 2); ctx.stroke();
    ctx.strokeStyle = color; ctx.lineWidth = 1.4; ctx.beginPath();
    order.forEach((i, j) => (j ? ctx.lineTo(pos[i] * dx, y(v[i])) : ctx.moveTo(pos[i] * dx, y(v[i]))));
    ctx.stroke();
  });
}

// Bars of a spectrum (frequency 1 first), each scaled to the largest; colorOfBar(k) per bar.
function drawBars(canvas, mags, colorOfBar, labels) {
  paint(canvas, (ctx, w, hh) => {
    const v = mags.map((x) => (isNum(x) ? x : 0)), m = Math.max(1e-12, ...v), bw = w / Math.max(1, v.length);
    const base = labels ? hh - 14 : hh;
    v.forEach((x, i) => {
      const bh = Math.max(0.5, (x / m) * (base - 2));
      ctx.fillStyle = colorOfBar(i + 1);
      ctx.fillRect(i * bw + bw * 0.1, base - bh, Math.max(1, bw * 0.8), bh);
    });
    if (!labels) return;
    ctx.fillStyle = "#555"; ctx.font = "10px system-ui, sans-serif"; ctx.textAlign = "center";
    v.forEach((_, i) => { if (labels(i + 1)) ctx.fillText(String(i + 1), (i + 0.5) * bw, hh - 3); });
  });
}

function drawInside(V, step) {
  if (!V || !Array.isArray(V.neurons) || !Array.isArray(V.groups)) return;
  const byIndex = new Map(V.neurons.map((nr) => [nr.index, nr]));
  const keyFreqs = new Set(V.groups.map((g) => g.freq).filter(isNum));
  $("inside").dataset.step = String(step);
  $("ingroups").dataset.freqs = V.groups.map((g) => (isNum(g.freq) ? g.freq : "mixed")).join(",");
  drawBars($("inemb"), Array.isArray(V.embedding) ? V.embedding : [], (k) => (keyFreqs.has(k) ? freqColor(k) : "#b9b9b9"),
    (k) => keyFreqs.has(k) || k === 1 || k % 5 === 0);
  const more = isNum(V.n_neurons) && V.n_neurons > V.neurons.length
    ? h("p", { class: "muted" }, `the ${V.neurons.length} neurons with the largest waves, of ${V.n_neurons}`) : null;
  $("ingroups").replaceChildren(more || "", ...V.groups.map((g) => {
    const color = freqColor(isNum(g.freq) ? g.freq : null), n = g.neurons.length;
    const title = isNum(g.freq) ? `frequency ${g.freq}: ${n} neuron${n > 1 ? "s" : ""}` : `no single frequency: ${n} neuron${n > 1 ? "s" : ""}`;
    return h("div", { class: "group", dataset: { freq: isNum(g.freq) ? String(g.freq) : "mixed" } },
      h("h4", { style: { borderLeftColor: color, color } }, title),
      h("div", { class: "neurons" }, g.neurons.map((j) => byIndex.get(j)).filter(Boolean).map((nr) => {
        const wave = h("canvas", { class: "wave" }), dft = h("canvas", { class: "dft" });
        const fig = h("figure", { class: "neuron", dataset: { neuron: String(nr.index), freq: String(nr.freq) },
          title: `neuron ${nr.index}: ${Math.round(100 * (isNum(nr.purity) ? nr.purity : 0))} % of its wave in frequency ${nr.freq}` },
        wave, dft, h("figcaption", {}, `#${nr.index}`));
        const k = $("inunwrap").checked && isNum(g.freq) ? g.freq : 0;
        fig._draw = () => { drawWave(wave, nr.wave, color, k); drawBars(dft, nr.dft, (k) => (k === nr.freq && isNum(g.freq) ? color : "#b9b9b9")); };
        return fig;
      })));
  }));
  for (const fig of $("ingroups").querySelectorAll("figure.neuron")) fig._draw();
}

async function togglePlay() {
  IN.playing = !IN.playing;
  $("inplay").textContent = IN.playing ? "❚❚ pause" : "▶ play";
  if (!IN.playing) return;
  if (IN.steps.indexOf(IN.step) >= IN.steps.length - 1) await showStep(IN.steps[0]);
  while (IN.playing) {
    await new Promise((r) => setTimeout(r, PLAY_MS));
    const i = IN.steps.indexOf(IN.step);
    if (!IN.playing || i < 0 || i >= IN.steps.length - 1) break;
    await showStep(IN.steps[i + 1]);
  }
  IN.playing = false;
  $("inplay").textContent = "▶ play";
}

// ---- sweeps and other results ----
async function loadSweep() {
  const path = S.view.path;
  try { S.sweep = await getJSON("/api/sweep?" + new URLSearchParams({ path })); S.sweep.error = null; }
  catch (e) { S.sweep = { path, error: e.message }; }
  if (S.view.kind === "sweep" && S.view.path === path) renderSweep();
}
function renderSweep() {
  const W = S.sweep;
  if (!W || W.error) { $("sweephead").replaceChildren(h("h2", {}, S.view.path), h("p", { class: "warn" }, W ? W.error : "loading…")); return; }
  $("sweephead").replaceChildren(h("h2", {}, W.path), h("div", { class: "facts" }, h("span", {}, `${isNum(W.trials) ? W.trials : 0} trials`),
    W.report ? link(W.report, "report.html") : null));
  $("sweeperrors").hidden = !W.errors.length;
  $("sweeperrors").textContent = W.errors.join("; ");
  renderFigs($("sweepfigs"), W.figures, "no phase diagram (fig_*.png) yet");
  $("sweepnrows").textContent = W.rows.length < (W.trials || 0) ? `(first ${W.rows.length} of ${W.trials})` : `(${W.rows.length})`;
  const runs = new Set((S.list ? S.list.runs : []).map((r) => r.path)), idCol = W.header.indexOf("id");
  const cell = (c, i) => {  // a point's id links to its run (sweep/points/ID) when it is listed
    const p = `${W.path}/points/${c}`;
    return h("td", {}, i === idCol && runs.has(p) ? h("a", { href: "#run=" + encodeURIComponent(p), dataset: { run: p } }, c) : c);
  };
  $("sweeptable").replaceChildren(...(W.header.length
    ? [h("tr", {}, W.header.map((x) => h("th", {}, x))), ...W.rows.map((r) => h("tr", {}, r.map(cell)))]
    : [h("tr", {}, h("td", { class: "muted" }, "no results.csv yet"))]));
  $("specname").textContent = W.spec ? W.spec.name : "spec";
  $("spec").textContent = W.spec ? W.spec.text : "";
}
function renderResult() {
  const R = S.list && S.list.results.find((r) => r.path === S.view.path);
  if (!R) { $("resulthead").replaceChildren(h("h2", {}, S.view.path), h("p", { class: "warn" }, "not found under the root (deleted?)")); return; }
  $("resulthead").replaceChildren(h("h2", {}, R.path), R.report ? h("div", { class: "facts" }, link(R.report, "report.html")) : "");
  renderFigs($("resultfigs"), R.figures, "no figures");
}

function showView() {
  const k = S.view && S.view.kind;
  $("empty").hidden = !!k;
  $("runview").hidden = k !== "run";
  $("sweepview").hidden = k !== "sweep";
  $("resultview").hidden = k !== "result";
  if (k === "run") renderRun(); else if (k === "sweep") renderSweep(); else if (k === "result") renderResult();
}

// ---- the list poll: also picks the first thing to show ----
let listTimer = null, sweepTick = 0;
async function pollList() {
  clearTimeout(listTimer);
  const sent = Date.now();
  try {
    S.list = await getJSON("/api/list");
    S.listAt = sent;
    banner(S.list.error);
    $("live").textContent = "updated " + new Date().toLocaleTimeString();
    if (!S.view && S.list.runs.length) {
      const byTime = [...S.list.runs].sort((a, b) => (b.status === "running") - (a.status === "running") || (b.mtime || 0) - (a.mtime || 0));
      select("run", byTime[0].path);
    }
    renderList();
    if (S.view && S.view.kind === "result") renderResult();
    if (S.view && S.view.kind === "sweep" && ++sweepTick % 3 === 0) loadSweep();
  } catch (e) {
    banner(`cannot reach the groklab dash server (${e.message}); retrying — is \`groklab dash\` still running?`);
    $("live").textContent = "disconnected";
  }
  listTimer = setTimeout(pollList, LIST_MS);
}

window.addEventListener("DOMContentLoaded", () => {
  $("runs").addEventListener("click", onListClick("run"));
  $("sweeps").addEventListener("click", onListClick("sweep"));
  $("results").addEventListener("click", onListClick("result"));
  $("sweeptable").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-run]");
    if (a) { ev.preventDefault(); select("run", a.dataset.run); }
  });
  $("filter").addEventListener("input", renderList);
  $("inslider").addEventListener("input", (e) => { const st = IN.steps[+e.target.value]; if (isNum(st)) showStep(st); });
  $("inplay").addEventListener("click", togglePlay);
  $("inunwrap").addEventListener("change", () => { if (IN.views.has(IN.step)) drawInside(IN.views.get(IN.step), IN.step); });
  $("logx").addEventListener("change", (e) => { S.logx = e.target.checked; if (S.view && S.view.kind === "run") renderRun(); });
  window.addEventListener("resize", () => { if (S.view && S.view.kind === "run") renderRun(); });
  window.addEventListener("hashchange", () => {  // a pasted or edited #run=… address
    readHash(); renderList(); showView();
    if (S.view && S.view.kind === "run") pollRuns(); else if (S.view && S.view.kind === "sweep") loadSweep();
  });
  readHash();
  showView();
  if (S.view && S.view.kind === "sweep") loadSweep();
  pollList();
  pollRuns();
});
