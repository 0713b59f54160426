// The monitoring dashboard (administrators; in single-user mode, the one user): totals, charts
// and tables over a window, from GET /api/dashboard, refreshed every 10 s while the tab is open.
// Charts are uPlot, served from /static/vendor/uplot (no CDN). The evaluations panel is another
// module's (evals.js); the dashboard works with or without it. "Export feedback" downloads the
// rated replies as TRL JSON Lines (GET /api/feedback/export, the model filter applied).

import { api, download, fetchFile } from "./api.js";
import { $, h, toast } from "./dom.js";
import { formatNumber, lang, pick, t } from "./i18n.js";
import { icon } from "./icons.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";

const REFRESH_MS = 10_000;
const COLORS = ["#4f46e5", "#e8590c", "#d93c3c", "#2f9e44", "#1098ad"];

const state = { window: "1h", model: "", body: null, timer: null, charts: [], evalsMounted: false, visible: false };

// ---------------------------------------------------------------- formatting

function seconds(v) {
  if (v == null) return "—";
  if (v < 1) return `${(v * 1000).toFixed(v < 0.01 ? 2 : v < 0.1 ? 1 : 0)} ms`;
  return `${v.toFixed(v < 10 ? 2 : 1)} s`;
}

function percent(v) {
  return v == null ? "—" : `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`;
}

function rate(v) {
  return v == null ? "—" : v >= 100 ? formatNumber(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2);
}

function locale() {
  return lang() === "zh" ? "zh-CN" : "en";
}

// Time ticks in the page's language: hours and minutes, with the day for the 7-day window.
function timeTick(v) {
  const d = new Date(v * 1000);
  const time = d.toLocaleTimeString(locale(), { hour: "numeric", minute: "2-digit" });
  return state.window === "7d" ? `${d.toLocaleDateString(locale(), { month: "numeric", day: "numeric" })} ${time}` : time;
}

function modelName(name) {
  return name || t("dash.no_model");
}

// ---------------------------------------------------------------- cards

function card(label, value, detail, tone) {
  return h("div", { class: `dash-card${tone ? ` ${tone}` : ""}` },
    h("div", { class: "dash-card-label" }, label),
    h("div", { class: "dash-card-value" }, value),
    detail ? h("div", { class: "dash-card-detail" }, detail) : null);
}

function renderCards(body) {
  const s = body.totals;
  const live = body.live.filter((m) => !state.model || m.model === state.model);
  const waiting = live.reduce((n, m) => n + m.waiting, 0);
  const running = live.reduce((n, m) => n + m.running, 0);
  const kv = live.length ? Math.max(...live.map((m) => m.kv_usage)) : null;
  $("#dash-cards").replaceChildren(
    card(t("dash.requests"), formatNumber(s.requests), t("dash.per_min", { n: rate(s.requests / (body.seconds / 60)) })),
    card(t("dash.errors"), formatNumber(s.errors), s.requests ? percent(s.errors / s.requests) : null, s.errors ? "bad" : ""),
    card(t("dash.rate_limited"), formatNumber(s.rate_limited), null, s.rate_limited ? "warn" : ""),
    card(t("dash.tokens_in"), formatNumber(s.prompt_tokens), t("dash.cache_hits", { rate: percent(s.prefix_cache_hit_rate) })),
    card(t("dash.tokens_out"), formatNumber(s.generation_tokens), t("dash.tokens_per_s", { n: rate(s.tokens_per_s) })),
    card(t("dash.ttft"), seconds(s.ttft.p50), t("dash.p95_p99", { p95: seconds(s.ttft.p95), p99: seconds(s.ttft.p99) })),
    card(t("dash.itl"), seconds(s.itl.p50), t("dash.p95_p99", { p95: seconds(s.itl.p95), p99: seconds(s.itl.p99) })),
    card(t("dash.queue"), formatNumber(waiting), t("dash.running_now", { n: formatNumber(running), max: formatNumber(s.waiting_max) }),
      waiting ? "warn" : ""),
    card(t("dash.kv"), percent(kv), t("dash.kv_max", { rate: percent(s.kv_usage_max) })));
}

// ---------------------------------------------------------------- charts

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// One chart: `lines` are [label, values] over body.series.t; `format` shapes axis and legend values.
function chartSpec(title, lines, format) {
  return { title, lines, format };
}

function chartSpecs(series) {
  const ms = (v) => (v == null ? null : v * 1000);
  const msFmt = (v) => (v == null ? "—" : `${rate(v)} ms`);
  return [
    chartSpec(t("dash.chart.requests"), [[t("dash.requests"), series.requests], [t("dash.errors"), series.errors],
      [t("dash.rate_limited"), series.rate_limited]], (v) => (v == null ? "—" : formatNumber(v))),
    chartSpec(t("dash.chart.tokens"), [[t("dash.generation_per_s"), series.generation_tokens_per_s],
      [t("dash.prompt_per_s"), series.prompt_tokens_per_s]], (v) => rate(v)),
    chartSpec(t("dash.chart.ttft"), [["p50", series.ttft_p50.map(ms)], ["p95", series.ttft_p95.map(ms)],
      ["p99", series.ttft_p99.map(ms)]], msFmt),
    chartSpec(t("dash.chart.itl"), [["p50", series.itl_p50.map(ms)], ["p95", series.itl_p95.map(ms)],
      ["p99", series.itl_p99.map(ms)]], msFmt),
    chartSpec(t("dash.chart.queue"), [[t("dash.waiting_max"), series.waiting_max], [t("dash.running_max"), series.running_max]],
      (v) => (v == null ? "—" : formatNumber(v))),
    chartSpec(t("dash.chart.kv"), [[t("dash.kv_usage_max"), series.kv_usage_max.map((v) => v * 100)]],
      (v) => (v == null ? "—" : `${rate(v)}%`)),
  ];
}

function chartWidth(box) {
  return Math.max(240, Math.floor(box.clientWidth) - 24);
}

function renderCharts(body) {
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  const grid = $("#dash-charts");
  grid.replaceChildren();
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 }, ticks: { stroke: cssVar("--line") } };
  for (const spec of chartSpecs(body.series)) {
    const box = h("figure", { class: "dash-chart" }, h("figcaption", {}, spec.title));
    grid.append(box);
    const opts = {
      width: chartWidth(box), height: 170,
      series: [{ label: t("dash.time"), value: (u, v) => (v == null ? "—" : new Date(v * 1000).toLocaleString(locale())) },
        ...spec.lines.map(([label], i) => ({ label, stroke: COLORS[i], width: 1.6, value: (u, v) => spec.format(v),
          points: { show: body.series.t.length <= 60 } }))],
      axes: [{ ...axis, values: (u, ticks) => ticks.map(timeTick) }, { ...axis, size: 72, values: (u, ticks) => ticks.map((v) => spec.format(v)) }],
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      cursor: { drag: { x: false, y: false } },
    };
    state.charts.push(new uPlot(opts, [body.series.t, ...spec.lines.map(([, values]) => values)], box));
  }
}

function resizeCharts() {
  for (const chart of state.charts) chart.setSize({ width: chartWidth(chart.root.parentElement), height: 170 });
}

// ---------------------------------------------------------------- tables

function table(head, rows, empty) {
  return h("table", { class: "kb-docs dash-table" },
    h("thead", {}, h("tr", {}, ...head.map((c, i) => h("th", { class: i ? "num" : "" }, c)))),
    h("tbody", {}, ...(rows.length ? rows.map((r) => h("tr", {}, ...r.map((c, i) => h("td", { class: i ? "num" : "" }, c))))
      : [h("tr", {}, h("td", { colspan: head.length, class: "empty" }, empty))])));
}

// The chat's own 👍/👎 icons (SVG: no emoji font needed), with the words for screen readers.
function thumb(glyph, key) {
  return h("span", { title: t(key), "aria-label": t(key) }, icon(glyph));
}

function renderTables(body) {
  const models = Object.entries(body.models);
  $("#dash-models").replaceChildren(table(
    [t("dash.col.model"), t("dash.requests"), t("dash.errors"), "429", t("dash.tokens_in"), t("dash.tokens_out"),
      t("dash.col.tps"), t("dash.col.ttft"), t("dash.col.itl"), t("dash.col.e2e"), t("dash.col.cache")],
    models.map(([name, s]) => [modelName(name), formatNumber(s.requests), formatNumber(s.errors), formatNumber(s.rate_limited),
      formatNumber(s.prompt_tokens), formatNumber(s.generation_tokens), rate(s.tokens_per_s),
      `${seconds(s.ttft.p50)} / ${seconds(s.ttft.p95)}`, `${seconds(s.itl.p50)} / ${seconds(s.itl.p95)}`,
      seconds(s.e2e.p50), percent(s.prefix_cache_hit_rate)]),
    t("dash.none")));
  $("#dash-errors").replaceChildren(table(
    [t("dash.col.model"), t("dash.col.status"), t("dash.col.code"), t("dash.col.count")],
    body.errors.map((e) => [modelName(e.model), String(e.status), e.code, formatNumber(e.count)]),
    t("dash.no_errors")));
  const fb = body.feedback;
  $("#dash-feedback-models").replaceChildren(table(
    [t("dash.col.model"), thumb("up", "dash.col.up"), thumb("down", "dash.col.down"), t("dash.col.positive"),
      t("dash.col.replies")],
    fb.models.map((m) => [modelName(m.model), formatNumber(m.up), formatNumber(m.down), percent(m.positive_rate),
      formatNumber(m.replies)]),
    t("dash.no_feedback")));
  $("#dash-feedback-templates").replaceChildren(table(
    [t("dash.col.template"), thumb("up", "dash.col.up"), thumb("down", "dash.col.down"), t("dash.col.positive"),
      t("dash.col.runs")],
    fb.templates.map((x) => [pick(x.name) || x.template, formatNumber(x.up), formatNumber(x.down), percent(x.positive_rate),
      formatNumber(x.runs)]),
    t("dash.no_runs")));
  const mod = body.moderation;
  const actions = ["block", "warn", "log"].filter((a) => Object.values(mod.categories).some((c) => c[a]));
  $("#dash-moderation").replaceChildren(
    h("p", { class: "hint" }, t("dash.moderation_total", { n: formatNumber(mod.total) })),
    table([t("mod.col.category"), ...actions], Object.entries(mod.categories).map(([c, counts]) =>
      [c, ...actions.map((a) => formatNumber(counts[a] || 0))]), t("mod.none")));
}

// ---------------------------------------------------------------- feedback export

async function exportFeedback() {
  const format = $("#dash-export-format").value;
  const query = new URLSearchParams({ format });
  if (state.model) query.set("model", state.model);
  const button = $("#dash-export-download");
  button.disabled = true;
  try {
    const file = await fetchFile(`/api/feedback/export?${query}`, `feedback-${format}.jsonl`);
    const text = await file.blob.text();
    const records = text.split("\n").filter((line) => line.trim()).length;
    if (!records) {
      toast(t("dash.export.empty", { summary: file.headers.get("x-export-summary") || "0" }));
      return;
    }
    download(file.filename, file.blob, "application/jsonl");
    toast(t(records === 1 ? "dash.export.done_one" : "dash.export.done", { file: file.filename, n: formatNumber(records) }));
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- loading

function renderModelChoice(body) {
  const select = $("#dash-model");
  const names = [...new Set([...body.served, ...Object.keys(body.models).filter(Boolean)])].sort();
  select.replaceChildren(h("option", { value: "" }, t("dash.all_models")),
    ...names.map((n) => h("option", { value: n, selected: n === state.model }, n)));
  select.value = state.model;
}

function render() {
  const body = state.body;
  if (!body) return;
  renderModelChoice(body);
  renderCards(body);
  renderCharts(body);
  renderTables(body);
  $("#dash-updated").textContent = t("dash.updated", { time: new Date(body.now * 1000).toLocaleTimeString(locale()) });
  document.body.dataset.dashboard = "ready";
}

async function refresh() {
  const query = new URLSearchParams({ window: state.window });
  if (state.model) query.set("model", state.model);
  state.body = await api("GET", `/api/dashboard?${query}`);
  if (state.visible) render();
}

function mountEvals() {
  if (state.evalsMounted) return;
  state.evalsMounted = true;
  const el = $("#evals-panel");
  import("./evals.js").then((m) => m.mountEvals(el)).catch(() => (el.hidden = true));
}

export async function showDashboard() {
  state.visible = true;
  mountEvals();
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    if (!document.hidden) refresh().catch((e) => toast(e.message, true));
  }, REFRESH_MS);
  await refresh();
}

export function hideDashboard() {
  state.visible = false;
  clearInterval(state.timer);
  state.timer = null;
}

// The tab exists for administrators (single-user mode: the one user is one).
export function initDashboard(me) {
  if (me?.user?.role !== "admin") return;
  $("#tab-dashboard").hidden = false;
  $("#dash-window").addEventListener("change", (e) => {
    state.window = e.target.value;
    refresh().catch((err) => toast(err.message, true));
  });
  $("#dash-model").addEventListener("change", (e) => {
    state.model = e.target.value;
    refresh().catch((err) => toast(err.message, true));
  });
  $("#dash-refresh").addEventListener("click", () => refresh().catch((err) => toast(err.message, true)));
  $("#dash-export-download").addEventListener("click", () => exportFeedback().catch((err) => toast(err.message, true)));
  window.addEventListener("languagechange", () => state.visible && render());
  window.addEventListener("resize", () => state.visible && resizeCharts());
}
