// The knowledge tab: knowledge bases (create, delete), their documents (upload several files at
// once, each indexed or failed with its reason; delete), and a search box to see what a question
// would retrieve. Conversations pick knowledge bases in their settings.

import { ApiError, api } from "./api.js";
import { $, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const state = { bases: [], current: null };

function basesList() {
  const list = $("#kb-list");
  list.replaceChildren(...state.bases.map((kb) => h("li", { class: kb.id === state.current ? "active" : "" },
    h("button", { type: "button", class: "kb-pick", onclick: () => openBase(kb.id) },
      h("span", { class: "kb-name" }, kb.name), h("span", { class: "kb-count" }, t("kb.counts", { docs: kb.documents, chunks: kb.chunks }))))));
  if (!state.bases.length) list.append(h("li", { class: "empty" }, t("kb.none")));
}

export async function loadKnowledge() {
  state.bases = (await api("GET", "/api/knowledge-bases")).data;
  basesList();
  if (state.current && state.bases.some((b) => b.id === state.current)) await openBase(state.current);
}

function statusText(d) {
  const p = d.progress;
  if (d.status === "indexing" && p && p.total) return `${t("kb.status.indexing")} ${Math.floor((100 * p.done) / p.total)}%`;
  return t(`kb.status.${d.status}`);
}

// Documents still being indexed in the background: look again until they are done.
function watch(id, docs) {
  clearTimeout(state.watch);
  if (docs.some((d) => d.status === "queued" || d.status === "indexing")) {
    state.watch = setTimeout(() => {
      if (state.current === id && !$("#knowledge-view").hidden) openBase(id, true).catch(() => {});
    }, 1500);
  }
}

async function openBase(id, refresh = false) {
  state.current = id;
  basesList();
  const kb = await api("GET", `/api/knowledge-bases/${id}`);
  $("#kb-main").hidden = false;
  $("#kb-title").textContent = kb.name;
  const rows = kb.documents_list.map((d) => h("tr", { class: `doc-${d.status}` },
    h("td", {}, d.filename), h("td", {}, h("span", { class: `badge ${d.status === "failed" ? "err" : d.status === "indexed" ? "" : "warn"}` }, statusText(d))),
    h("td", {}, String(d.chunks)), h("td", { class: "doc-error" }, d.error || ""),
    h("td", { class: "doc-actions" },
      h("button", { type: "button", class: "btn ghost small doc-reindex", onclick: (e) => reindexDoc(e.target, id, d.id) }, t("kb.reindex")),
      h("button", { type: "button", class: "btn ghost small", onclick: () => deleteDoc(id, d.id) }, t("kb.delete")))));
  $("#kb-docs").replaceChildren(...rows);
  $("#kb-docs-empty").hidden = rows.length > 0;
  if (!refresh) $("#kb-hits").replaceChildren();
  watch(id, kb.documents_list);
  if (refresh) {
    state.bases = (await api("GET", "/api/knowledge-bases")).data;
    basesList();
  }
}

async function createBase(e) {
  e.preventDefault();
  const name = $("#kb-new-name").value.trim();
  if (!name) return;
  const kb = await api("POST", "/api/knowledge-bases", { name });
  $("#kb-new-name").value = "";
  state.current = kb.id;
  await loadKnowledge();
}

async function upload() {
  const files = $("#kb-files").files;
  if (!files.length || !state.current) return;
  const form = new FormData();
  for (const f of files) form.append("files", f);
  $("#kb-upload").disabled = true;
  try {
    const response = await fetch(`/api/knowledge-bases/${state.current}/documents`, { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new ApiError(response.status, body.error);
    const failed = body.data.filter((d) => d.status === "failed" || d.status === "duplicate");
    toast(failed.length ? failed.map((d) => d.error).join(" · ") : t("kb.uploaded", { n: body.data.length }), failed.length > 0);
  } finally {
    $("#kb-upload").disabled = false;
    $("#kb-files").value = "";
  }
  await loadKnowledge();
}

async function reindexDoc(button, kbId, docId) {
  button.disabled = true;
  try {
    const doc = await api("POST", `/api/knowledge-bases/${kbId}/documents/${docId}/reindex`);
    toast(doc.status === "indexed" ? t("kb.reindexed", { name: doc.filename, chunks: doc.chunks }) : doc.error, doc.status !== "indexed");
  } finally {
    await loadKnowledge();
  }
}

async function deleteDoc(kbId, docId) {
  await api("DELETE", `/api/knowledge-bases/${kbId}/documents/${docId}`);
  await loadKnowledge();
}

async function deleteBase() {
  if (!state.current) return;
  await api("DELETE", `/api/knowledge-bases/${state.current}`);
  state.current = null;
  $("#kb-main").hidden = true;
  await loadKnowledge();
}

async function search(e) {
  e.preventDefault();
  const query = $("#kb-query").value.trim();
  if (!query || !state.current) return;
  const { hits } = await api("POST", `/api/knowledge-bases/${state.current}/search`, { query, k: 5 });
  const box = $("#kb-hits");
  if (!hits.length) {
    box.replaceChildren(h("p", { class: "no-source" }, t("msg.no_source")));
    return;
  }
  box.replaceChildren(...hits.map((hit, i) => h("div", { class: "kb-hit" },
    h("div", { class: "kb-hit-head" }, `[${i + 1}] ${hit.document.filename}` + (hit.heading ? ` › ${hit.heading}` : "")),
    h("div", { class: "kb-hit-text" }, hit.text))));
}

export function initKnowledge() {
  const fail = (e) => toast(e.message, true);
  $("#kb-new").addEventListener("submit", (e) => createBase(e).catch(fail));
  $("#kb-upload").addEventListener("click", () => upload().catch(fail));
  $("#kb-delete").addEventListener("click", () => deleteBase().catch(fail));
  $("#kb-search").addEventListener("submit", (e) => search(e).catch(fail));
  window.addEventListener("languagechange", () => basesList());
}
