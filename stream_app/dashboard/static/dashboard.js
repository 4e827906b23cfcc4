// The live dashboard: renders /api/summary as it arrives on /api/stream (server-sent events).
// Plain JavaScript; the charts are drawn on canvas by drawChart below.
"use strict";

const PALETTE = ["#2f6fd6", "#d9822b", "#1a9e77", "#c2417a", "#7b5cc4", "#8c6d31", "#5a6b7d",
                 "#d4b106", "#0f8b8d", "#a33b20"];
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const int = (n) => (n == null ? "—" : Number(n).toLocaleString("en-US"));
const pct = (x, d = 1) => (x == null ? "—" : (100 * x).toFixed(d) + " %");
const signed = (x, d = 1) => (x == null ? "—" : (x >= 0 ? "+" : "") + (100 * x).toFixed(d) + " %");
const range = (iv) => (iv ? pct(iv[0]) + " – " + pct(iv[1]) : "—");
const points = (x) => (x == null ? "—" : (x >= 0 ? "+" : "") + (100 * x).toFixed(1) + " pt");
const pointRange = (iv) => (iv ? points(iv[0]) + " … " + points(iv[1]) : "—");
const duration = (ms) => [[604800000, "week"], [86400000, "day"], [3600000, "h"], [60000, "min"],
  [1000, "s"]].map(([unit, name]) => (ms % unit === 0 ? `${ms / unit} ${name}` : null)).find((x) => x);
const stamp = (ms) => (ms == null ? "—" : new Date(ms).toISOString().slice(5, 16).replace("T", " "));
let latest = null;

// A line chart: lines = [{name, values, low?, high?, dash?}] over xs (bucket starts, ms);
// bands are drawn from low/high; null values leave gaps.
function drawChart(canvas, xs, lines, opts = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  const shown = lines.filter((l) => l.values.some((v) => v != null));
  if (!xs.length || !shown.length) {
    g.fillStyle = "#6b7385"; g.textAlign = "center";
    g.fillText(opts.empty || "no data yet", w / 2, h / 2);
    return;
  }
  // legend, wrapped over as many rows as it needs
  let lx = 44, ly = 12;
  shown.forEach((l, i) => {
    l.color = l.color || PALETTE[i % PALETTE.length];
    const width = g.measureText(l.name).width + 22;
    if (lx + width > w - 8) { lx = 44; ly += 14; }
    g.fillStyle = l.color; g.fillRect(lx, ly - 8, 10, 10);
    g.fillStyle = "#1d2433"; g.textAlign = "left"; g.fillText(l.name, lx + 14, ly + 1);
    lx += width;
  });
  const pad = { l: 44, r: 12, t: ly + 12, b: 20 };
  let max = 0;
  for (const l of shown) for (const v of (l.high || l.values)) if (v != null) max = Math.max(max, v);
  // a round step, at most 5 of them up to the highest value (a rate: at most 100 %)
  const step = [0.02, 0.05, 0.1, 0.2, 0.25].find((s) => Math.ceil(max / s - 1e-9) <= 5) || 0.25;
  const ticks = Math.min(Math.max(Math.ceil(max / step - 1e-9), 1), Math.round(1 / step));
  const top = ticks * step;
  const X = (i) => pad.l + (xs.length === 1 ? (w - pad.l - pad.r) / 2
                                            : (i * (w - pad.l - pad.r)) / (xs.length - 1));
  const Y = (v) => h - pad.b - (v / top) * (h - pad.t - pad.b);
  g.strokeStyle = "#e3e6ec"; g.fillStyle = "#6b7385"; g.textAlign = "right"; g.lineWidth = 1;
  for (let k = 0; k <= ticks; k++) {
    const v = step * k, y = Math.round(Y(v)) + 0.5;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(pct(v, 0), pad.l - 5, y + 4);
  }
  g.textAlign = "center";
  const xticks = xs.length > 2 ? [0, Math.floor((xs.length - 1) / 2), xs.length - 1] : [0, xs.length - 1];
  for (const i of new Set(xticks)) g.fillText(stamp(xs[i]), Math.min(Math.max(X(i), pad.l + 30), w - 40), h - 5);
  for (const l of shown) {
    if (l.low && l.high) {  // the interval band: upper edge forwards, lower edge back, per run
      g.fillStyle = l.color + "22";
      let run = [];
      const flush = () => {
        if (run.length) {
          g.beginPath();
          run.forEach((i, k) => (k ? g.lineTo(X(i), Y(l.high[i])) : g.moveTo(X(i), Y(l.high[i]))));
          for (let k = run.length - 1; k >= 0; k--) g.lineTo(X(run[k]), Y(l.low[run[k]]));
          g.closePath(); g.fill();
        }
        run = [];
      };
      xs.forEach((_, i) => (l.low[i] != null && l.high[i] != null ? run.push(i) : flush()));
      flush();
    }
    g.strokeStyle = l.color; g.lineWidth = 2; g.setLineDash(l.dash ? [5, 4] : []);
    g.beginPath();
    let pen = false;
    l.values.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      pen ? g.lineTo(X(i), Y(v)) : g.moveTo(X(i), Y(v));
      pen = true;
    });
    g.stroke(); g.setLineDash([]);
    if (xs.length < 30) {
      g.fillStyle = l.color;
      l.values.forEach((v, i) => { if (v != null) { g.beginPath(); g.arc(X(i), Y(v), 2.5, 0, 7); g.fill(); } });
    }
  }
}

const rateLines = (byName) => Object.entries(byName).map(([name, s]) => (
  { name, values: s.rate, low: s.low, high: s.high }));

function drawCharts(s) {
  const x = s.series.start_ms;
  const learning = [{ name: "observed", values: s.series.response_rate.rate,
                      low: s.series.response_rate.low, high: s.series.response_rate.high },
                    { name: "predicted", values: s.series.mean_predicted, dash: true }];
  if (s.series.oracle) {
    learning.push({ name: "engine (true rate)", values: s.series.oracle.chosen, color: "#1a9e77" });
    learning.push({ name: "oracle", values: s.series.oracle.best, dash: true, color: "#1d2433" });
    learning.push({ name: "random", values: s.series.oracle.random, dash: true, color: "#9aa1ad" });
  }
  drawChart($("chart-learning"), x, learning);
  drawChart($("chart-policy"), x, rateLines(s.series.by_policy));
  drawChart($("chart-arm"), x, rateLines(s.series.by_arm), { empty: "no experiment running" });
  drawChart($("chart-exposure"), x, Object.entries(s.series.exposure_share).map(
    ([name, values]) => ({ name, values })));
}

function setTile(id, value, sub) { $(id).textContent = value; $(id + "-sub").textContent = sub || ""; }

function groupTable(rows, label) {
  if (!rows.length) return `<tr><td class="empty">nothing yet</td></tr>`;
  const head = `<tr><th>${label}</th><th>decisions</th><th>share</th><th>responded</th>` +
    `<th>rate</th><th>95 % interval</th><th>lift</th></tr>`;
  return head + rows.map((r) => `<tr><td title="${esc(r.name)}">${esc(r.name)}</td>` +
    `<td>${int(r.decisions)}</td><td>${pct(r.share)}</td>` +
    `<td>${int(r.responses)} of ${int(r.outcomes)}</td>` +
    `<td>${pct(r.response_rate)}</td><td>${range(r.interval)}</td>` +
    `<td class="${r.lift > 0 ? "up" : r.lift < 0 ? "down" : ""}">${signed(r.lift)}</td></tr>`).join("");
}

function experimentTables(experiments) {
  if (!experiments.length) return `<div class="empty">no experiment statistics published yet</div>`;
  return experiments.map((e) => {
    const note = e.anytime_valid ? "" : ` · ${e.sources} partitions summed (no joint interval)`;
    const alarm = e.alarm ? ` <span class="alarm">alarm${e.srm ? ": sample ratio" : ""}</span>` : "";
    const rows = e.arms.map((a) => `<tr><td>${esc(a.arm)}${a.arm === e.baseline ? " (baseline)" : ""}</td>` +
      `<td>${int(a.exposures)}</td><td>${int(a.outcomes)}</td><td>${pct(a.response_rate)}</td>` +
      `<td>${range(a.interval)}</td><td class="${a.significant ? (a.lift > 0 ? "up" : "down") : ""}">` +
      `${points(a.lift)}</td><td>${pointRange(a.lift_interval)}</td></tr>`);
    return `<div><b>${esc(e.experiment_id)}</b> <small>${esc(e.use_case || "every use case")}${note}</small>${alarm}` +
      `<table><tr><th>arm</th><th>exposures</th><th>outcomes</th><th>rate</th><th>interval</th>` +
      `<th>lift</th><th>lift interval</th></tr>${rows.join("")}</table></div>`;
  }).join("");
}

function alarmList(s) {
  const drift = s.drift.recent.map((d) => `<li>${stamp(d.ts)} drift in <b>${esc(d.model)}</b> ` +
    `(candidate ${esc(d.candidate)}): error ${Number(d.error_before).toFixed(3)} → ` +
    `${Number(d.error_after).toFixed(3)}, ${esc(d.action)}</li>`);
  const reasons = s.dead_letters.by_reason.map((r) => `<li><b>${int(r.count)}</b> ${esc(r.reason)}</li>`);
  const recent = s.dead_letters.recent.map((d) => `<li>${esc(d.topic)} [${esc(d.partition)}] @` +
    `${esc(d.offset)}: ${esc(d.reason)}</li>`);
  return `<h2>Drift alarms <small>${int(s.drift.alarms)}</small></h2>` +
    (drift.length ? `<ul class="events">${drift.join("")}</ul>` : `<div class="empty">none</div>`) +
    `<h2>Dead letters by reason <small>${int(s.dead_letters.count)}</small></h2>` +
    (reasons.length ? `<ul class="events">${reasons.join("")}</ul><h2>Latest dead letters</h2>` +
      `<ul class="events">${recent.join("")}</ul>` : `<div class="empty">none</div>`);
}

function render(s) {
  latest = s;
  const t = s.totals;
  setTile("decisions", int(t.decisions), `${int(t.offers)} offers · ${int(t.no_action)} no action`);
  setTile("outcomes", int(t.outcomes), `${int(t.ignored)} ignored · ${int(t.late)} late`);
  setTile("responses", int(t.responses), `of ${int(t.settled)} settled`);
  setTile("response-rate", pct(t.response_rate), range(t.interval));
  setTile("mean-predicted", pct(t.mean_predicted), "the engine's own estimate");
  if (s.oracle) {
    const random = s.oracle.oracle_rate ? s.oracle.random_rate / s.oracle.oracle_rate : null;
    setTile("of-oracle", pct(s.oracle.of_oracle, 0),
            `2nd half ${pct(s.oracle.second_half.of_oracle, 0)} · random ${pct(random, 0)}`);
  } else {
    setTile("of-oracle", "—", "needs the simulator's parameters");
  }
  setTile("dead-letters", int(t.dead_letters), s.dead_letters.by_reason.length ?
          `${s.dead_letters.by_reason.length} reasons` : "");
  setTile("drift-alarms", int(t.drift_alarms), `${int(t.experiment_alarms)} experiment alarms`);
  $("clock").textContent = `event time ${stamp(s.event_time_ms)} UTC · points every ` +
    `${duration(s.series.width_ms)} of event time` +
    (s.missing_topics.length ? ` · waiting for ${s.missing_topics.join(", ")}` : "");
  $("offers").innerHTML = groupTable(s.offers, "offer");
  $("policies").innerHTML = groupTable(s.policies, "policy");
  $("experiments").innerHTML = experimentTables(s.experiments);
  $("alarms").innerHTML = alarmList(s);
  drawCharts(s);
}

function setStatus(text, cls) { $("status").textContent = text; $("status").className = cls || ""; }

function connect() {
  const events = new EventSource("/api/stream");
  events.onmessage = (e) => {
    render(JSON.parse(e.data));
    setStatus(`live · updated ${new Date().toLocaleTimeString("en-GB")}`, "live");
  };
  events.onerror = () => setStatus("reconnecting…", "stale");
}

window.addEventListener("resize", () => latest && drawCharts(latest));
connect();
