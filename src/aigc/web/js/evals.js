// Evaluations (administrators): start a run of a built-in eval set on a served model, follow its
// progress, and see every model's pass rates over time — a uPlot chart per set and a table of runs;
// a run's row opens its items (output and each check). Data from /api/evals (server/eval_routes.py).
// The dashboard calls mountEvals on its #evals-panel section; nothing here assumes that page.

import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { lang, pick, t } from "./i18n.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";

const POLL_MS = 3000; // while a run is running
const COLORS = ["#4f46e5", "#e8590c", "#2f9e44", "#d93c3c", "#1098ad", "#ae3ec9"];

function percent(v) {
  return v == null ? "—" : `${Math.round(v * 100)}%`;
}

function locale() {
  return lang() === "zh" ? "zh-CN" : "en";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(locale()) : "";
}

function statusBadge(run) {
  if (run.status === "running") return h("span", { class: "badge warn" }, t("evals.running", { done: run.done, total: run.total }));
  if (run.status !== "done") return h("span", { class: "badge err", title: run.error || "" }, t(`evals.status.${run.status}`));
  if (run.gate == null) return h("span", { class: "badge" }, t("evals.status.done"));
  return run.pass_rate >= run.gate
    ? h("span", { class: "badge" }, t("evals.gate_met", { gate: percent(run.gate) }))
    : h("span", { class: "badge err" }, t("evals.gate_missed", { gate: percent(run.gate) }));
}

// One line per model through its finished runs of `set`, x = time of the run.
function chartData(runs, set) {
  const done = runs.filter((r) => r.set === set && r.status === "done").reverse(); // oldest first
  const models = [...new Set(done.map((r) => r.model))];
  const xs = [...new Set(done.map((r) => Date.parse(r.created_at) / 1000))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const lines = models.map((m) => {
    const ys = xs.map(() => null);
    for (const r of done.filter((r) => r.model === m)) ys[index.get(Date.parse(r.created_at) / 1000)] = r.pass_rate * 100;
    return ys;
  });
  return { models, data: [xs, ...lines] };
}

export function mountEvals(element) {
  const state = { sets: [], models: [], runs: [], chartSet: "", open: null, chart: null, timer: null };
  const root = h("div", { class: "evals" });
  element.replaceChildren(root);

  function renderChart(box) {
    state.chart?.destroy();
    state.chart = null;
    const { models, data } = chartData(state.runs, state.chartSet);
    if (!models.length) {
      box.append(h("p", { class: "hint" }, t("evals.no_runs_for_set")));
      return;
    }
    const fmt = (v) => (v == null ? "—" : `${Math.round(v)}%`);
    state.chart = new uPlot({
      width: Math.max(280, Math.floor(box.clientWidth || 600) - 24), height: 180,
      series: [{ label: t("evals.col.time"), value: (u, v) => (v == null ? "—" : new Date(v * 1000).toLocaleString(locale())) },
        ...models.map((m, i) => ({ label: m, stroke: COLORS[i % COLORS.length], width: 1.6, spanGaps: true, value: (u, v) => fmt(v),
          points: { show: true, size: 6 } }))],
      axes: [{ space: 110, values: (u, ticks) => ticks.map((v) => new Date(v * 1000).toLocaleString(locale(),
        { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" })) },
      { values: (u, ticks) => ticks.map(fmt), size: 52 }],
      scales: { y: { range: [0, 100] } },
      cursor: { drag: { x: false, y: false } },
    }, data, box);
  }

  function renderResults(run) {
    return h("div", { class: "evals-results" },
      h("h4", {}, t("evals.results_of", { set: run.set, model: run.model, time: when(run.created_at) })),
      h("table", { class: "kb-docs dash-table" },
        h("thead", {}, h("tr", {}, h("th", {}, t("evals.col.item")), h("th", {}, t("evals.col.result")),
          h("th", {}, t("evals.col.checks")), h("th", {}, t("evals.col.output")))),
        h("tbody", {}, ...(run.results || []).map((r) => h("tr", {},
          h("td", {}, r.id),
          h("td", {}, h("span", { class: r.passed ? "badge" : "badge err" }, t(r.passed ? "evals.pass" : "evals.fail"))),
          h("td", {}, ...r.checks.map((c) => h("div", { title: c.detail || "" },
            `${c.passed ? "✓" : "✗"} ${c.name}${c.score != null ? ` (${c.score})` : ""}${c.required ? "" : ` · ${t("evals.measured")}`}`))),
          h("td", {}, h("div", { class: "evals-output" }, r.error ? t("evals.error", { error: r.error }) : r.output)))))));
  }

  function render() {
    const setNames = state.sets.map((s) => s.name);
    if (!setNames.includes(state.chartSet)) state.chartSet = state.runs.find((r) => r.status === "done")?.set || setNames[0] || "";
    const setSelect = h("select", { "aria-label": t("evals.set") },
      ...state.sets.map((s) => h("option", { value: s.name, title: pick(s.description) }, s.name)));
    const modelSelect = h("select", { "aria-label": t("evals.model") },
      h("option", { value: "" }, t("evals.default_model")), ...state.models.map((m) => h("option", { value: m }, m)));
    const limit = h("input", { type: "number", min: 1, max: 2000, placeholder: t("evals.all_items"), class: "evals-limit" });
    const start = h("button", { type: "button", class: "btn primary small" }, t("evals.start"));
    start.addEventListener("click", async () => {
      start.disabled = true;
      try {
        const body = { set: setSelect.value };
        if (modelSelect.value) body.model = modelSelect.value;
        if (limit.value) body.limit = Number(limit.value);
        const run = await api("POST", "/api/evals/runs", body);
        toast(t("evals.started", { set: run.set, model: run.model }));
        await refresh();
      } catch (e) {
        toast(e.message, true);
      } finally {
        start.disabled = false;
      }
    });
    const chartPick = h("select", { "aria-label": t("evals.chart_set") },
      ...setNames.map((n) => h("option", { value: n, selected: n === state.chartSet }, n)));
    chartPick.addEventListener("change", () => {
      state.chartSet = chartPick.value;
      render();
    });
    const chartBox = h("figure", { class: "dash-chart" },
      h("figcaption", {}, t("evals.chart_title"), " ", chartPick));
    const rows = state.runs.map((r) => {
      const tr = h("tr", { class: "evals-run", dataset: { run: String(r.id) } },
        h("td", {}, when(r.created_at)), h("td", {}, r.set, r.template_version ? ` v${r.template_version}` : ""),
        h("td", {}, r.model), h("td", { class: "num" }, percent(r.pass_rate)),
        h("td", { class: "num" }, r.status === "done" ? `${r.passed}/${r.done}` : `${r.done}/${r.total}`),
        h("td", {}, statusBadge(r)), h("td", {}, r.started_by || t("evals.cli")));
      tr.addEventListener("click", () => openRun(r.id));
      return tr;
    });
    root.replaceChildren(
      h("h3", {}, t("evals.title")),
      h("div", { class: "dash-head" }, h("label", {}, t("evals.set"), setSelect), h("label", {}, t("evals.model"), modelSelect),
        h("label", {}, t("evals.limit"), limit), start),
      chartBox,
      h("div", { class: "dash-scroll" }, h("table", { class: "kb-docs dash-table" },
        h("thead", {}, h("tr", {}, ...["time", "set", "model", "pass_rate", "passed", "status", "by"].map((c, i) =>
          h("th", { class: i === 3 || i === 4 ? "num" : "" }, t(`evals.col.${c}`))))),
        h("tbody", {}, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, t("evals.none")))])))),
      state.open ? renderResults(state.open) : "");
    renderChart(chartBox);
  }

  async function openRun(id) {
    try {
      state.open = await api("GET", `/api/evals/runs/${id}`);
      render();
    } catch (e) {
      toast(e.message, true);
    }
  }

  async function refresh() {
    state.runs = (await api("GET", "/api/evals/runs?limit=500")).data;
    if (state.open) {
      const fresh = state.runs.find((r) => r.id === state.open.id);
      if (fresh && fresh.status !== state.open.status) state.open = await api("GET", `/api/evals/runs/${fresh.id}`);
    }
    render();
    clearTimeout(state.timer);
    // Follow a running run while the panel is on the page; slower while the page is hidden.
    if (state.runs.some((r) => r.status === "running") && element.isConnected) {
      state.timer = setTimeout(() => refresh().catch(() => {}), document.hidden ? POLL_MS * 5 : POLL_MS);
    }
  }

  async function load() {
    const [sets, models] = await Promise.all([api("GET", "/api/evals/sets"), api("GET", "/api/models")]);
    state.sets = sets.data;
    state.models = models.data.filter((m) => m.ready).map((m) => m.id);
    await refresh();
  }

  window.addEventListener("languagechange", () => render());
  load().catch((e) => {
    if (e.status === 403) element.hidden = true; // not an administrator
    else toast(e.message, true);
  });
}
