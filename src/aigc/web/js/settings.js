// The settings drawer: per-conversation model, system prompt (persona) and sampling parameters.
// For a chat not yet saved they are kept as a draft and sent when the conversation is created.

import { api, apiKey, setApiKey } from "./api.js";
import { $, h, toast } from "./dom.js";
import { t } from "./i18n.js";

export const DEFAULT_PARAMS = { temperature: 0.7, top_p: 0.95, max_tokens: 256, seed: null };

const models = { list: [], default: null };
let draft = { model: null, system_prompt: "", params: {} };
let hooks = { current: () => null, onSaved: () => {} };

const knowledge = { list: [] };

export async function loadModels() {
  const [result, bases] = await Promise.all([api("GET", "/api/models"),
    api("GET", "/api/knowledge-bases").catch(() => ({ data: [] }))]);
  models.list = result.data;
  models.default = result.default;
  knowledge.list = bases.data;
  fillModels();
}

function fillKnowledge(selected = []) {
  const select = $("#set-knowledge");
  select.replaceChildren(...knowledge.list.map((kb) =>
    h("option", { value: String(kb.id), selected: selected.includes(kb.id) }, `${kb.name} (${kb.documents})`)));
  select.closest("label").hidden = knowledge.list.length === 0;
}

export function modelNames() {
  return models.list.filter((m) => m.ready).map((m) => m.id);
}

function fillModels(selected) {
  const select = $("#set-model");
  select.replaceChildren(...models.list.map((m) =>
    h("option", { value: m.id, disabled: !m.ready }, m.id + (m.remote ? " (remote)" : "") + (m.ready ? "" : " …"))));
  select.value = selected || models.default || "";
}

export function draftSettings() {
  const out = { system_prompt: draft.system_prompt, params: { ...draft.params } };
  if (draft.knowledge_base_ids?.length) out.knowledge_base_ids = draft.knowledge_base_ids;
  if (draft.model) out.model = draft.model;
  return out;
}

function showValues(source) {
  const params = { ...DEFAULT_PARAMS, ...(source.params || {}) };
  fillModels(source.model);
  fillKnowledge(source.knowledge_base_ids || []);
  $("#set-system").value = source.system_prompt || "";
  for (const key of ["temperature", "top_p"]) {
    $(`#set-${key}`).value = params[key];
    $(`#out-${key}`).textContent = Number(params[key]).toFixed(2);
  }
  $("#set-max_tokens").value = params.max_tokens;
  $("#set-seed").value = params.seed ?? "";
  $("#set-apikey").value = apiKey();
}

function readValues() {
  const seed = $("#set-seed").value.trim();
  const maxTokens = parseInt($("#set-max_tokens").value, 10);
  return {
    knowledge_base_ids: [...$("#set-knowledge").selectedOptions].map((o) => Number(o.value)),
    model: $("#set-model").value || null,
    system_prompt: $("#set-system").value,
    params: {
      temperature: Number($("#set-temperature").value),
      top_p: Number($("#set-top_p").value),
      max_tokens: Number.isFinite(maxTokens) && maxTokens > 0 ? maxTokens : DEFAULT_PARAMS.max_tokens,
      seed: seed === "" ? null : parseInt(seed, 10),
    },
  };
}

export function openSettings() {
  showValues(hooks.current() || draft);
  $("#settings").classList.add("open");
  $("#settings").setAttribute("aria-hidden", "false");
}

export function closeSettings() {
  $("#settings").classList.remove("open");
  $("#settings").setAttribute("aria-hidden", "true");
}

async function save() {
  const values = readValues();
  setApiKey($("#set-apikey").value.trim());
  const current = hooks.current();
  let saved = null;
  if (current) {
    saved = await api("PATCH", `/api/conversations/${current.id}`, values);
  } else {
    draft = values;
  }
  toast(t("settings.saved"));
  closeSettings();
  hooks.onSaved(saved);
}

export function initSettings(h) {
  hooks = h;
  $("#open-settings").addEventListener("click", openSettings);
  $("#close-settings").addEventListener("click", closeSettings);
  $("#save-settings").addEventListener("click", () => save().catch((e) => toast(e.message, true)));
  for (const key of ["temperature", "top_p"]) {
    $(`#set-${key}`).addEventListener("input", (e) => ($(`#out-${key}`).textContent = Number(e.target.value).toFixed(2)));
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeSettings();
  });
}
