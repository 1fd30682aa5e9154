// groklab dash: polls the server's JSON routes and draws SVG charts. No library, no build step.
// The list refreshes every LIST_MS; each shown run asks only for the lines appended since its
// last answer (the server's byte-offset tokens), so a long run costs little to follow.
"use strict";

const LIST_MS = 2000, RUN_MS = 1000, MAX_DRAWN = 1500;
const COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const S = {
  list: null,          // last /api/list answer
  view: null,          // {kind: "run"|"sweep"|"result", path}
  overlay: [],         // run paths drawn with the selected run (the selected one first)
  runs: {},            // path -> {m, s, metrics: [], measures: [], detail}
  sweep: null,         // last /api/sweep answer
  logx: true,
  ok: true,
};

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v, d = 3) => (v === null || v === undefined) ? "–" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d)) : String(v));
const fileUrl = (p, v) => "/files/" + p.split("/").map(encodeURIComponent).join("/") + (v ? "?v=" + v : "");

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
  const h = new URLSearchParams(location.hash.slice(1));
  for (const kind of ["run", "sweep", "result"]) if (h.get(kind)) S.view = { kind, path: h.get(kind) };
  S.overlay = S.view && S.view.kind === "run" ? [S.view.path, ...(h.get("with") || "").split("|").filter((p) => p && p !== S.view.path)] : [];
}
function writeHash() {
  if (!S.view) return;
  const h = new URLSearchParams();
  h.set(S.view.kind, S.view.path);
  if (S.view.kind === "run" && S.overlay.length > 1) h.set("with", S.overlay.slice(1).join("|"));
  history.replaceState(null, "", "#" + h.toString());
}
function select(kind, path) {
  S.view = { kind, path };
  if (kind === "run") S.overlay = [path, ...S.overlay.filter((p) => p !== path)];
  writeHash(); renderList(); showView(); if (kind === "run") pollRunsNow(); else if (kind === "sweep") loadSweep();
}
function toggleOverlay(path, on) {
  if (!on && S.view && S.view.kind === "run" && S.view.path === path) { renderList(); return; }  // the shown run stays drawn
  S.overlay = S.overlay.filter((p) => p !== path);
  if (on) S.overlay.push(path);
  if (!S.view || S.view.kind !== "run") { S.view = { kind: "run", path }; S.overlay = [path]; }
  writeHash(); renderList(); showView(); pollRunsNow();
}
const colorOf = (path) => COLORS[Math.max(0, S.overlay.indexOf(path)) % COLORS.length];

// ---- the side bar ----
function renderList() {
  const L = S.list;
  if (!L) return;
  $("root").textContent = L.root;
  const f = $("filter").value.trim().toLowerCase();
  const runs = L.runs.filter((r) => !f || (r.path + " " + r.task + " " + r.preset).toLowerCase().includes(f));
  $("nruns").textContent = `(${L.runs.length})`;
  $("runs").innerHTML = runs.map((r) => {
    const sel = S.view && S.view.kind === "run" && S.view.path === r.path;
    const on = S.overlay.includes(r.path);
    const status = r.errors.length ? "error" : r.status;
    const prog = r.step === null || r.step === undefined ? "no metrics yet" : `step ${r.step}${r.steps ? "/" + r.steps : ""} · val ${fmt(r.val_acc)}`;
    return `<li data-path="${esc(r.path)}" data-status="${esc(r.status)}" class="${sel ? "selected" : ""}">` +
      `<input type="checkbox" title="overlay on the charts" ${on ? "checked" : ""}>` +
      (on ? `<span class="swatch" style="background:${colorOf(r.path)}"></span>` : "") +
      `<span class="name">${esc(r.path)}</span><span class="badge ${esc(status)}">${esc(r.errors.length ? "error" : r.status)}</span>` +
      `<div class="sub">${esc(r.preset ? r.preset + " · " : "")}${esc(r.task)} · ${esc(prog)}${r.phase ? " · " + esc(r.phase) : ""}</div></li>`;
  }).join("") || `<li class="muted">${L.runs.length ? "no run matches the filter" : "no run directory (config.json) under the root yet"}</li>`;
  $("nsweeps").textContent = `(${L.sweeps.length})`;
  $("sweeps").innerHTML = L.sweeps.map((s) => `<li data-path="${esc(s.path)}" class="${S.view && S.view.kind === "sweep" && S.view.path === s.path ? "selected" : ""}">` +
    `<span class="name">${esc(s.path)}</span><div class="sub">${s.trials === null ? "no results.csv yet" : s.trials + " trials"} · ${s.figures.length} figures</div></li>`).join("") || `<li class="muted">none</li>`;
  $("nresults").textContent = `(${L.results.length})`;
  $("results").innerHTML = L.results.map((s) => `<li data-path="${esc(s.path)}" class="${S.view && S.view.kind === "result" && S.view.path === s.path ? "selected" : ""}">` +
    `<span class="name">${esc(s.path)}</span><div class="sub">${s.figures.map((f) => esc(f.name)).join(", ") || "report"}</div></li>`).join("") || `<li class="muted">none</li>`;
}

function onListClick(kind) {
  return (ev) => {
    const li = ev.target.closest("li[data-path]");
    if (!li) return;
    if (ev.target.matches("input[type=checkbox]")) toggleOverlay(li.dataset.path, ev.target.checked);
    else select(kind, li.dataset.path);
  };
}

// ---- charts: inline SVG, log or linear axes, vertical markers ----
function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of (hi - lo < 1.5 ? [1, 2, 5] : [1])) { const v = Math.log10(m) + e; if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(v); }
    }
    return out;
  }
  const span = hi - lo || 1, raw = span / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(v);
  return out;
}
function tickLabel(v, log) {
  const x = +(log ? Math.pow(10, v) : v).toPrecision(3);  // 0.00999999 is 0.01
  const a = Math.abs(x);
  if (a < 1e-12) return "0";
  return a >= 1e5 || a < 1e-3 ? x.toExponential().replace("e+", "e") : String(x);
}
function thin(points) {
  if (points.length <= MAX_DRAWN) return points;
  const k = Math.ceil(points.length / MAX_DRAWN), out = points.filter((_, i) => i % k === 0);
  if (out[out.length - 1] !== points[points.length - 1]) out.push(points[points.length - 1]);
  return out;
}

// series: [{run, key, label, color, dash, points: [[step, value], ...]}]; opt: {logy, ymin, ymax, markers}
function drawChart(svg, series, opt) {
  const W = svg.clientWidth || 480, H = svg.clientHeight || 260, ml = 52, mr = 10, mt = 14, mb = 26;
  const logx = S.logx, logy = !!opt.logy;
  const tx = (s) => (logx ? Math.log10(Math.max(s, 1)) : s);
  const ty = (v) => (logy ? Math.log10(v) : v);
  let xs = [], ys = [];
  for (const se of series) for (const [s, v] of se.points) if (!logy || v > 0) { xs.push(tx(s)); ys.push(ty(v)); }
  for (const m of opt.markers || []) xs.push(tx(m.step));
  if (!xs.length) { svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no points yet</text>`; svg.dataset.points = "0"; return; }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = opt.ymin ?? Math.min(...ys), y1 = opt.ymax ?? Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { const pad = logy || y0 === 0 ? 0.5 : Math.abs(y0) * 0.1; y0 -= pad; y1 += pad; }  // a constant (lr)
  const px = (x) => ml + (x - x0) / (x1 - x0) * (W - ml - mr), py = (y) => mt + (1 - (y - y0) / (y1 - y0)) * (H - mt - mb);
  let g = `<g class="grid">`;
  for (const t of ticks(y0, y1, logy)) g += `<line x1="${ml}" x2="${W - mr}" y1="${py(t)}" y2="${py(t)}"/><text x="${ml - 4}" y="${py(t) + 3}" text-anchor="end">${tickLabel(t, logy)}</text>`;
  for (const t of ticks(x0, x1, logx)) g += `<line x1="${px(t)}" x2="${px(t)}" y1="${mt}" y2="${H - mb}"/><text x="${px(t)}" y="${H - mb + 13}" text-anchor="middle">${tickLabel(t, logx)}</text>`;
  g += `</g><line class="axis" x1="${ml}" x2="${W - mr}" y1="${H - mb}" y2="${H - mb}"/><line class="axis" x1="${ml}" x2="${ml}" y1="${mt}" y2="${H - mb}"/>`;
  g += `<text x="${W - mr}" y="${H - 2}" text-anchor="end">step</text>`;
  let total = 0;
  for (const se of series) {
    const pts = thin(se.points.filter(([, v]) => !logy || v > 0));
    total += se.points.length;
    const d = pts.map(([s, v], i) => `${i ? "L" : "M"}${px(tx(s)).toFixed(1)},${py(ty(v)).toFixed(1)}`).join("");
    g += `<path d="${d}" fill="none" stroke="${se.color}" stroke-width="1.6" ${se.dash ? 'stroke-dasharray="5 3"' : ""} data-run="${esc(se.run)}" data-key="${esc(se.key)}" data-points="${se.points.length}"><title>${esc(se.label)}</title></path>`;
  }
  for (const m of opt.markers || []) {
    const c = m.kind === "train" ? "#1f77b4" : m.kind === "val" ? "#d62728" : "#555";
    g += `<line class="marker" x1="${px(tx(m.step))}" x2="${px(tx(m.step))}" y1="${mt}" y2="${H - mb}" stroke="${c}"><title>${esc(m.label)} @ ${m.step}</title></line>` +
      `<text x="${px(tx(m.step)) + 2}" y="${mt - 3}" style="fill:${c}">${esc(m.label)}</text>`;
  }
  svg.innerHTML = g;
  svg.dataset.points = String(total);
}

// ---- the run view ----
function pts(records, key) { return records.filter((r) => typeof r[key] === "number").map((r) => [r.step, r[key]]); }

function renderRun() {
  const path = S.view.path, R = S.runs[path], D = R && R.detail;
  const head = $("runhead");
  if (!D) { head.innerHTML = `<h2>${esc(path)}</h2><p class="muted">${R && R.error ? esc(R.error) : "loading…"}</p>`; return; }
  const s = D.summary || {};
  head.innerHTML = `<h2>${esc(D.path)} <span class="badge ${esc(D.status)}">${esc(D.status)}</span></h2>` +
    `<div class="facts"><span>${esc(D.preset || "no preset")} · ${esc(D.task)}</span><span>step ${fmt(D.step)}${D.steps ? " / " + D.steps : ""}</span>` +
    `<span>train ${fmt(D.train_acc)} · val ${fmt(D.val_acc)}</span>${D.phase ? `<span>phase <b>${esc(D.phase)}</b></span>` : ""}` +
    (s.message ? `<span>${esc(s.message)}</span>` : "") + `</div><div class="facts">` +
    (D.report ? `<a href="${fileUrl(D.report)}" target="_blank">report.html</a>` : `<span class="muted">report.html is written when the run ends</span>`) +
    `<a href="${fileUrl(D.path + "/metrics.jsonl")}" target="_blank">metrics.jsonl</a>` +
    (R.measures.length ? `<a href="${fileUrl(D.path + "/measures.jsonl")}" target="_blank">measures.jsonl</a>` : "") + `</div>`;
  const errs = [...(D.errors || []), ...(R.error ? [R.error] : [])];
  $("runerrors").hidden = !errs.length;
  $("runerrors").innerHTML = errs.map(esc).join("<br>");

  const acc = [], loss = [], legend = [];
  const single = S.overlay.length === 1;  // one run: train blue, validation red, as in curves.png
  for (const p of S.overlay) {
    const r = S.runs[p];
    if (!r) continue;
    const c = colorOf(p), ct = single ? "#1f77b4" : c;
    acc.push({ run: p, key: "val_acc", label: p + " validation", color: c, points: pts(r.metrics, "val_acc") });
    acc.push({ run: p, key: "train_acc", label: p + " train", color: ct, dash: true, points: pts(r.metrics, "train_acc") });
    loss.push({ run: p, key: "val_loss", label: p + " validation", color: c, points: pts(r.metrics, "val_loss") });
    loss.push({ run: p, key: "train_loss", label: p + " train", color: ct, dash: true, points: pts(r.metrics, "train_loss") });
    legend.push(single ? `<span><i style="background:${ct}"></i>train</span><span><i style="background:${c}"></i>validation · ${esc(p)} (${r.metrics.length} points)</span>`
      : `<span><i style="background:${c}"></i>${esc(p)} (${r.metrics.length} points)</span>`);
  }
  drawChart($("acc"), acc, { ymin: 0, ymax: 1, markers: D.markers });
  drawChart($("loss"), loss, { logy: true, markers: D.markers });
  $("legend").innerHTML = legend.join("");

  // progress measures, then the other values of metrics.jsonl (lr, weight norm; a GTN's meta-loss)
  const keys = [], shown = new Set(["step", "time", "train_acc", "val_acc", "train_loss", "val_loss"]);
  for (const r of R.measures) for (const k of Object.keys(r)) if (k !== "step" && !keys.includes(k)) keys.push(k);
  const mkeys = [];
  for (const r of R.metrics) for (const k of Object.keys(r)) if (!shown.has(k) && !mkeys.includes(k)) mkeys.push(k);
  const box = $("measures"), all = [...keys.map((k) => ["measures", k]), ...mkeys.map((k) => ["metrics", k])];
  if (!all.length) box.innerHTML = `<p class="muted">no progress measures in this run yet</p>`;
  else {
    const sig = all.map((x) => x.join(":")).join(",");
    if (box.dataset.keys !== sig) {
      box.innerHTML = all.map(([src, k]) => `<figure><figcaption>${esc(k)}${src === "metrics" ? ' <span class="muted">(metrics.jsonl)</span>' : ""}</figcaption>` +
        `<svg class="small" data-${src === "measures" ? "measure" : "metric"}="${esc(k)}"></svg></figure>`).join("") +
        (keys.length ? "" : `<p class="muted">no progress measures (train.measure_every=0, or none measured yet; <code>groklab analyze</code> adds them)</p>`);
      box.dataset.keys = sig;
    }
    for (const svg of box.querySelectorAll("svg[data-measure], svg[data-metric]")) {
      const k = svg.dataset.measure || svg.dataset.metric, p = pts(svg.dataset.measure ? R.measures : R.metrics, k), vals = p.map((x) => x[1]);
      const pos = vals.length && vals.every((v) => v > 0), logy = pos && Math.max(...vals) / Math.min(...vals) > 100;
      drawChart(svg, [{ run: path, key: k, label: k, color: colorOf(path), points: p }], { logy, markers: D.markers });
    }
  }
  renderFigs($("figs"), D.figures, "no fig_*.png in this run (groklab analyze and GTN runs add them; the curves are above)");
  $("config").textContent = D.config ? JSON.stringify(D.config, null, 2) : "config.json unreadable";
}

function renderFigs(el, figs, none) {
  const want = figs.map((f) => f.path + "@" + f.mtime).join(",");
  if (el.dataset.figs === want) return;  // reloading unchanged images would flicker
  el.dataset.figs = want;
  el.innerHTML = figs.length ? figs.map((f) => `<figure><a href="${fileUrl(f.path, f.mtime)}" target="_blank"><img alt="${esc(f.name)}" src="${fileUrl(f.path, f.mtime)}" onerror="this.replaceWith('image not readable yet')"></a><figcaption>${esc(f.name)}</figcaption></figure>`).join("")
    : `<p class="muted">${esc(none)}</p>`;
}

async function pollRun(path) {
  const R = S.runs[path] || (S.runs[path] = { m: null, s: null, metrics: [], measures: [], detail: null, error: null });
  if (R.busy) return;  // one request per run at a time, so no record is appended twice
  R.busy = true;
  const q = new URLSearchParams({ path });
  if (R.m) q.set("m", R.m);
  if (R.s) q.set("s", R.s);
  try {
    const D = await getJSON("/api/run?" + q.toString());
    for (const [k, tk] of [["metrics", "m"], ["measures", "s"]]) {
      const got = D[k];
      if (got.reset) R[k] = [];
      R[k].push(...got.records);
      R[tk] = got.token;
    }
    delete D.metrics; delete D.measures;
    R.detail = D; R.error = null;
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
    if (S.view && S.view.kind === "run") renderRun();
  }
  runTimer = setTimeout(pollRuns, RUN_MS);
}
function pollRunsNow() { pollRuns(); }

// ---- sweeps and other results ----
async function loadSweep() {
  const path = S.view.path;
  try { S.sweep = await getJSON("/api/sweep?" + new URLSearchParams({ path })); S.sweep.error = null; }
  catch (e) { S.sweep = { path, error: e.message }; }
  if (S.view.kind === "sweep" && S.view.path === path) renderSweep();
}
function renderSweep() {
  const W = S.sweep;
  if (!W || W.error) { $("sweephead").innerHTML = `<h2>${esc(S.view.path)}</h2><p class="warn">${esc(W ? W.error : "loading…")}</p>`; return; }
  $("sweephead").innerHTML = `<h2>${esc(W.path)}</h2><div class="facts"><span>${W.trials ?? 0} trials</span>` +
    (W.report ? `<a href="${fileUrl(W.report)}" target="_blank">report.html</a>` : "") + `</div>`;
  $("sweeperrors").hidden = !W.errors.length;
  $("sweeperrors").textContent = W.errors.join("; ");
  renderFigs($("sweepfigs"), W.figures, "no phase diagram (fig_*.png) yet");
  $("sweepnrows").textContent = W.rows.length < (W.trials || 0) ? `(first ${W.rows.length} of ${W.trials})` : `(${W.rows.length})`;
  const runs = new Set((S.list ? S.list.runs : []).map((r) => r.path)), idCol = W.header.indexOf("id");
  const cell = (c, i) => {  // a point's id links to its run (sweep/points/ID) when it is listed
    const p = `${W.path}/points/${c}`;
    return i === idCol && runs.has(p) ? `<td><a href="#run=${encodeURIComponent(p)}" data-run="${esc(p)}">${esc(c)}</a></td>` : `<td>${esc(c)}</td>`;
  };
  $("sweeptable").innerHTML = W.header.length ? `<tr>${W.header.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>` + W.rows.map((r) => `<tr>${r.map(cell).join("")}</tr>`).join("") : `<tr><td class="muted">no results.csv yet</td></tr>`;
  $("specname").textContent = W.spec ? W.spec.name : "spec";
  $("spec").textContent = W.spec ? W.spec.text : "";
}
function renderResult() {
  const R = S.list && S.list.results.find((r) => r.path === S.view.path);
  if (!R) { $("resulthead").innerHTML = `<h2>${esc(S.view.path)}</h2><p class="warn">not found under the root (deleted?)</p>`; return; }
  $("resulthead").innerHTML = `<h2>${esc(R.path)}</h2>` + (R.report ? `<div class="facts"><a href="${fileUrl(R.report)}" target="_blank">report.html</a></div>` : "");
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
  try {
    S.list = await getJSON("/api/list");
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
  $("logx").addEventListener("change", (e) => { S.logx = e.target.checked; if (S.view && S.view.kind === "run") renderRun(); });
  window.addEventListener("resize", () => { if (S.view && S.view.kind === "run") renderRun(); });
  window.addEventListener("hashchange", () => {  // a pasted or edited #run=… address
    readHash(); renderList(); showView();
    if (S.view && S.view.kind === "run") pollRunsNow(); else if (S.view && S.view.kind === "sweep") loadSweep();
  });
  readHash();
  showView();
  if (S.view && S.view.kind === "sweep") loadSweep();
  pollList();
  pollRuns();
});
