// The studio tab: template cards -> a form built from the template's typed fields -> the rendered
// prompt on demand -> streamed output -> "save to conversation". Users' own templates can be
// created, edited, copied, deleted, exported and imported (JSON).

import { api, download, pickJsonFile, stream } from "./api.js";
import { $, h, toast } from "./dom.js";
import { pick, t } from "./i18n.js";
import { icon } from "./icons.js";
import { renderMarkdown } from "./markdown.js";
import { modelNames } from "./settings.js";

const state = { templates: [], selected: null, values: {}, run: null, output: "", prompt: "", model: null,
  json: false, outputJson: false };

export async function loadTemplates() {
  const [templates, bases] = await Promise.all([api("GET", "/api/templates"), api("GET", "/api/knowledge-bases")]);
  state.templates = templates.data;
  state.bases = bases.data;
  if (state.selected) state.selected = state.templates.find((x) => x.id === state.selected.id) || null;
  if (!state.selected && state.templates.length && window.matchMedia("(min-width: 821px)").matches) {
    select(state.templates[0]); // a wide screen shows the first template's form at once
    return;
  }
  renderCards();
  renderMain();
}

function renderCards() {
  const frag = document.createDocumentFragment();
  for (const tpl of state.templates) {
    frag.append(h("button", { type: "button", class: `card${state.selected?.id === tpl.id ? " active" : ""}`,
      dataset: { template: tpl.id }, onclick: () => select(tpl) },
      h("div", { class: "card-title" }, h("span", {}, pick(tpl.name)),
        h("span", { class: "badge" }, tpl.builtin ? t("studio.builtin") : t("studio.mine"))),
      h("div", { class: "card-desc" }, pick(tpl.description))));
  }
  $("#tpl-cards").replaceChildren(frag);
}

function select(tpl) {
  if (state.run) return;
  state.selected = tpl;
  state.values = Object.fromEntries(tpl.fields.map((f) => [f.name, f.default ?? ""]));
  state.output = "";
  state.prompt = "";
  state.maxTokens = null;
  state.model = null;
  renderCards();
  renderMain();
}

function fieldInput(f) {
  const value = state.values[f.name] ?? "";
  const set = (e) => (state.values[f.name] = e.target.value);
  let input;
  if (f.type === "select") {
    input = h("select", { name: f.name, onchange: set },
      f.options.map((o) => h("option", { value: o.value, selected: String(value) === o.value }, pick(o.label))));
  } else if (f.type === "textarea") {
    input = h("textarea", { name: f.name, rows: 4, oninput: set, placeholder: pick(f.placeholder) || null });
    input.value = value;
  } else {
    input = h("input", { name: f.name, type: f.type === "number" ? "number" : "text", oninput: set,
      placeholder: pick(f.placeholder) || null, min: f.min ?? null, max: f.max ?? null });
    input.value = value;
  }
  return h("label", { class: f.type === "textarea" ? "full" : "" },
    h("span", {}, pick(f.label) + (f.required ? " *" : "")), input);
}

function renderMain() {
  const main = $("#studio-main");
  const tpl = state.selected;
  if (!tpl) {
    main.replaceChildren(h("p", { class: "placeholder" }, t("studio.pick")));
    return;
  }
  const running = Boolean(state.run);
  const served = modelNames();
  const model = h("select", { id: "studio-model", onchange: (e) => (state.model = e.target.value) },
    served.map((name) => h("option", { value: name, selected: name === (state.model || tpl.resolved_model) }, name)));
  const owner = tpl.builtin
    ? [h("button", { type: "button", class: "btn ghost small", onclick: () => openEditor(tpl, true) }, t("studio.copy"))]
    : [h("button", { type: "button", class: "btn ghost small", onclick: () => openEditor(tpl, false) }, t("studio.edit")),
      h("button", { type: "button", class: "btn ghost small", onclick: () => removeTemplate(tpl) }, t("studio.delete"))];
  const parts = [
    h("div", { class: "tpl-head" },
      h("div", { style: "flex:1" }, h("h2", {}, pick(tpl.name)), h("p", {}, pick(tpl.description))), ...owner),
    h("form", { class: "tpl-form", id: "tpl-values", onsubmit: (e) => { e.preventDefault(); run(); } },
      tpl.fields.map(fieldInput),
      h("label", {}, h("span", {}, t("studio.model")), model),
      // grounding: the run answers from these knowledge bases and lists what it cited
      (state.bases || []).length ? h("label", {}, h("span", {}, t("studio.knowledge")),
        h("select", { id: "studio-knowledge", multiple: true, size: Math.min(3, state.bases.length),
          onchange: (e) => (state.kbIds = [...e.target.selectedOptions].map((o) => Number(o.value))) },
        state.bases.map((kb) => h("option", { value: String(kb.id), selected: (state.kbIds || []).includes(kb.id) }, kb.name)))) : null,
      h("label", {}, h("span", {}, t("settings.max_tokens")),
        h("input", { id: "studio-max-tokens", type: "number", min: 1, max: 32768,
          value: state.maxTokens ?? tpl.params.max_tokens ?? 256, oninput: (e) => (state.maxTokens = e.target.value) })),
      // templates that declare an output schema can answer as JSON that follows it
      tpl.output_schema ? h("label", { class: "check" },
        h("input", { id: "studio-json", type: "checkbox", checked: Boolean(state.json),
          onchange: (e) => (state.json = e.target.checked) }),
        h("span", {}, t("studio.json"))) : null),
    h("div", { class: "tpl-bar" },
      running
        ? h("button", { type: "button", class: "btn danger", id: "studio-stop", onclick: stopRun }, t("chat.stop"))
        : h("button", { type: "button", class: "btn primary", id: "studio-run", onclick: run }, t("studio.run")),
      h("button", { type: "button", class: "btn ghost", id: "studio-preview", onclick: togglePrompt },
        t(state.prompt ? "studio.hide" : "studio.preview")),
      h("button", { type: "button", class: "btn ghost", id: "studio-save", disabled: running || !state.output,
        onclick: saveToConversation }, t("studio.save")),
      !running && state.output && state.lastRun?.id ? rateButtons(state.lastRun) : null),
    state.prompt ? h("div", {}, h("div", { class: "section-label" }, t("studio.prompt")),
      h("div", { class: "prompt-box", id: "studio-prompt" }, state.prompt)) : null,
    h("div", { class: "section-label" }, t("studio.output")),
    h("div", { class: `output-box msg-body${running ? " cursor" : ""}`, id: "studio-output" },
      renderOutput()),
    state.filtered ? h("p", { class: "moderation-note", id: "studio-moderation" }, t("msg.content_filter.note")) : null,
    state.sources ? renderSources(state.sources) : null,
  ];
  main.replaceChildren(...parts.filter(Boolean));
}

// JSON output shown as a code block, indented once it parses (while it streams it may not yet)
function jsonBlock(text) {
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* still streaming */ }
  return "```json\n" + shown + "\n```";
}

function renderOutput() {
  return renderMarkdown(state.outputJson ? jsonBlock(state.output) : state.output, t("msg.copy"));
}

// What a grounded run cited (an empty list: no relevant source, said instead of an answer).
function renderSources(sources) {
  if (!sources.length) return h("p", { class: "no-source", id: "studio-sources" }, t("msg.no_source"));
  return h("div", { class: "kb-hits", id: "studio-sources" }, h("div", { class: "section-label" }, t("studio.sources")),
    sources.map((s) => h("div", { class: "kb-hit" },
      h("div", { class: "kb-hit-head" }, `[${s.n}] ${s.document.filename}` + (s.heading ? ` › ${s.heading}` : "")),
      h("div", { class: "kb-hit-text" }, s.text))));
}

function requestBody() {
  const body = { values: state.values };
  if (state.kbIds?.length) body.knowledge_base_ids = state.kbIds;
  const model = $("#studio-model")?.value;
  if (model) body.model = model;
  const maxTokens = parseInt($("#studio-max-tokens")?.value, 10);
  if (maxTokens > 0) body.params = { max_tokens: maxTokens };
  if (state.json && state.selected?.output_schema) body.output = "json";
  return body;
}

async function togglePrompt() {
  if (state.prompt) {
    state.prompt = "";
  } else {
    const result = await api("POST", `/api/templates/${encodeURIComponent(state.selected.id)}/render`, requestBody())
      .catch(fail);
    if (!result) return;
    state.prompt = (result.system ? `[system] ${result.system}\n\n` : "") + result.prompt;
  }
  renderMain();
}

async function run() {
  if (state.run) return;
  const tpl = state.selected;
  state.output = "";
  state.outputJson = Boolean(state.json && tpl.output_schema);
  state.sources = null;
  state.filtered = false;
  state.run = { controller: new AbortController(), prompt: "", model: null };
  renderMain();
  const out = () => $("#studio-output");
  let pending = false;
  try {
    await stream(`/api/templates/${encodeURIComponent(tpl.id)}/run`, requestBody(), (event) => {
      if (event.type === "start") {
        state.run.prompt = event.prompt;
        state.run.system = event.system;
        state.run.model = event.model;
        state.run.id = event.run_id;
        state.sources = event.sources;
        if (state.prompt) state.prompt = (event.system ? `[system] ${event.system}\n\n` : "") + event.prompt;
      } else if (event.type === "delta") {
        state.output += event.text;
        if (!pending) {
          pending = true;
          requestAnimationFrame(() => {
            pending = false;
            out()?.replaceChildren(renderOutput());
          });
        }
      } else if (event.type === "error") {
        toast(event.error?.message || t("error.generic"), true);
      } else if (event.type === "done" && event.finish_reason === "content_filter") {
        state.filtered = true; // the run was refused or cut by moderation: say so under the output
      }
    }, state.run.controller.signal);
  } catch (e) {
    fail(e);
  }
  state.lastRun = { ...state.run, template: tpl };
  state.run = null;
  renderMain();
}

// 👍/👎 on the last run's output (the dashboard counts them per template); the same again takes it back.
function rateButtons(last) {
  return h("span", { class: "studio-rate" },
    ...[[1, "up", "studio.rate.up"], [-1, "down", "studio.rate.down"]].map(([value, glyph, key]) =>
      h("button", { type: "button", class: `icon-btn fb-btn${last.rating === value ? " on" : ""}`, title: t(key),
        "aria-label": t(key), "aria-pressed": String(last.rating === value), dataset: { rating: value },
        onclick: () => rate(last, value) }, icon(glyph))));
}

async function rate(last, value) {
  const path = `/api/templates/runs/${encodeURIComponent(last.id)}/feedback`;
  const taken = last.rating === value;
  const ok = await (taken ? api("DELETE", path) : api("PUT", path, { rating: value })).then(() => true).catch(fail);
  if (!ok) return;
  last.rating = taken ? null : value;
  if (!taken) toast(t("studio.rated"));
  renderMain();
}

function stopRun() {
  state.run?.controller.abort(); // the server cancels the generation when the client leaves
}

async function saveToConversation() {
  const last = state.lastRun;
  if (!last || !state.output) return;
  const tpl = last.template;
  const created = await api("POST", "/api/conversations/import", {
    title: `${pick(tpl.name)} · ${new Date().toLocaleString()}`.slice(0, 200),
    system_prompt: last.system || "",
    model: last.model,
    params: {},
    messages: [
      { role: "user", content: last.prompt },
      { role: "assistant", content: state.output, model: last.model },
    ],
  }).catch(fail);
  if (!created) return;
  toast(t("studio.saved"));
  window.dispatchEvent(new CustomEvent("conversationsaved", { detail: created.id }));
}

async function removeTemplate(tpl) {
  if (!confirm(t("studio.delete.confirm"))) return;
  await api("DELETE", `/api/templates/${encodeURIComponent(tpl.id)}`).catch(fail);
  state.selected = null;
  await loadTemplates();
}

// ---------------------------------------------------------------- editor

let editing = null; // {id} of the user template being edited, or null for a new one

function openEditor(tpl, asCopy) {
  editing = tpl && !asCopy ? tpl : null;
  const dialog = $("#tpl-editor");
  $("#editor-title").textContent = t(editing ? "editor.title.edit" : "editor.title.new");
  $("#ed-name-en").value = tpl ? tpl.name.en + (asCopy ? " (copy)" : "") : "";
  $("#ed-name-zh").value = tpl ? tpl.name.zh + (asCopy ? "（副本）" : "") : "";
  $("#ed-description").value = tpl ? pick(tpl.description) : "";
  $("#ed-system").value = tpl?.system || "";
  $("#ed-body").value = tpl?.body || "Write about {{ topic }}.";
  $("#ed-fields").value = JSON.stringify(tpl?.fields || [{ name: "topic", type: "text", label: "Topic", required: true }], null, 2);
  $("#ed-model").value = tpl?.model || "";
  $("#ed-params").value = JSON.stringify(tpl?.params || { temperature: 0.7, max_tokens: 256 });
  $("#ed-error").hidden = true;
  dialog.showModal();
}

function parseJson(id, what) {
  try {
    return JSON.parse($(id).value || "null");
  } catch {
    throw new Error(t("editor.badjson", { what }));
  }
}

async function saveEditor(e) {
  e.preventDefault();
  const error = $("#ed-error");
  try {
    const body = {
      name: { en: $("#ed-name-en").value.trim(), zh: $("#ed-name-zh").value.trim() },
      description: $("#ed-description").value.trim(),
      system: $("#ed-system").value,
      body: $("#ed-body").value,
      fields: parseJson("#ed-fields", "fields") || [],
      model: $("#ed-model").value.trim() || null,
      params: parseJson("#ed-params", "params") || {},
    };
    const saved = editing
      ? await api("PUT", `/api/templates/${encodeURIComponent(editing.id)}`, body)
      : await api("POST", "/api/templates", body);
    $("#tpl-editor").close();
    state.selected = saved;
    await loadTemplates();
    select(state.templates.find((x) => x.id === saved.id) || saved);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

async function importTemplates() {
  const data = await pickJsonFile();
  if (!data) return;
  const result = await api("POST", "/api/templates/import", data);
  toast(t("studio.imported", { n: result.data.length }));
  await loadTemplates();
}

async function exportTemplates() {
  const doc = await api("GET", "/api/templates/export");
  download("aigc-templates.json", JSON.stringify(doc, null, 2), "application/json");
}

function fail(e) {
  toast(e.message || t("error.generic"), true);
  return null;
}

export function initStudio() {
  $("#tpl-new").addEventListener("click", () => openEditor(null, false));
  $("#tpl-import").addEventListener("click", () => importTemplates().catch(fail));
  $("#tpl-export").addEventListener("click", () => exportTemplates().catch(fail));
  $("#tpl-form").addEventListener("submit", saveEditor);
  $("#ed-cancel").addEventListener("click", () => $("#tpl-editor").close());
  window.addEventListener("languagechange", () => {
    renderCards();
    if (!state.run) renderMain();
  });
}
