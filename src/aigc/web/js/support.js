// The support tab: the hand-off queue (visitors who asked for a person, or whose question had no
// source), a visitor's transcript with a reply box for staff, and the support sites (persona,
// rules, knowledge bases, allowed origins, and the <script> tag to put on the shop's pages).
// While the tab is open the queue and the open transcript refresh every few seconds; the tab's
// badge counts who is waiting.

import { api } from "./api.js";
import { $, copyText, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const POLL_MS = 4000;
const state = { filter: "open", queue: [], sites: [], chat: null, site: null, timer: null, visible: false };

function badge(count) {
  const el = $("#support-count");
  el.hidden = !count;
  el.textContent = String(count || "");
}

function stateLabel(handoff) {
  return t(`sup.state.${handoff || "none"}`);
}

function renderQueue() {
  const list = $("#sup-queue");
  list.replaceChildren(...state.queue.map((c) => {
    const last = c.last_message;
    return h("li", { class: c.id === state.chat ? "active" : "" },
      h("button", { type: "button", class: "kb-pick", onclick: () => openChat(c.id) },
        h("span", { class: "sup-line" }, h("span", { class: `badge ${c.handoff === "waiting" ? "warn" : ""}` }, stateLabel(c.handoff)),
          h("span", { class: "kb-name" }, t("sup.chat_title", { site: c.site_name, id: c.id }))),
        c.handoff_reason ? h("span", { class: "kb-count" }, t(`sup.reason.${c.handoff_reason}`)) : null,
        last ? h("span", { class: "sup-snippet" }, last.content) : null));
  }));
  if (!state.queue.length) list.append(h("li", { class: "empty" }, t("sup.no_queue")));
}

function renderSites() {
  const list = $("#sup-sites");
  list.replaceChildren(...state.sites.map((s) => h("li", { class: s.id === state.site ? "active" : "" },
    h("button", { type: "button", class: "kb-pick", onclick: () => openSite(s.id) },
      h("span", { class: "kb-name" }, s.name), h("span", { class: "kb-count" }, s.origins.join(" "))))));
  if (!state.sites.length) list.append(h("li", { class: "empty" }, t("sup.no_sites")));
}

async function loadQueue() {
  const body = await api("GET", `/api/support/queue?state=${encodeURIComponent(state.filter)}`);
  state.queue = body.data;
  if (state.filter === "open") badge(body.waiting);
  renderQueue();
}

export async function refreshSupportBadge() {
  try {
    badge((await api("GET", "/api/support/queue?state=waiting")).data.length);
  } catch {
    /* no access, or the server is busy: no badge */
  }
}

export async function loadSupport() {
  state.visible = true;
  const [sites] = await Promise.all([api("GET", "/api/support/sites"), loadQueue()]);
  state.sites = sites.data;
  renderSites();
  if (state.chat) await openChat(state.chat, true);
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    if (!state.visible) return;
    loadQueue().catch(() => {});
    if (state.chat && !$("#sup-chat").hidden) openChat(state.chat, true).catch(() => {});
  }, POLL_MS);
}

export function hideSupport() {
  state.visible = false;
  clearInterval(state.timer);
  state.timer = null;
}

function show(which) {
  $("#sup-placeholder").hidden = which !== null;
  $("#sup-chat").hidden = which !== "chat";
  $("#sup-site").hidden = which !== "site";
}

async function openChat(id, quiet = false) {
  const c = await api("GET", `/api/support/conversations/${id}`);
  state.chat = id;
  state.site = null;
  show("chat");
  $("#sup-chat-title").textContent = t("sup.chat_title", { site: c.site_name, id: c.id });
  $("#sup-chat-state").textContent = stateLabel(c.handoff);
  $("#sup-chat-state").className = `badge ${c.handoff === "waiting" ? "warn" : ""}`;
  $("#sup-claim").hidden = c.handoff === "active";
  $("#sup-back").hidden = !c.handoff || c.handoff === "resolved";
  $("#sup-resolve").hidden = c.handoff === "resolved" || !c.handoff;
  const box = $("#sup-transcript");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...c.messages.filter((m) => m.content).map((m) => {
    const staff = m.role === "assistant" && m.author;
    const who = m.role === "user" ? t("sup.visitor") : staff ? t("sup.staff", { name: m.author }) : t("sup.assistant");
    const sources = (m.sources || []).map((s) => `[${s.n}] ${s.document.filename}`).join(", ");
    return h("div", { class: `sup-msg ${staff ? "staff" : m.role}` }, h("span", { class: "sup-who" }, who), m.content,
      sources ? h("div", { class: "sup-sources" }, t("sup.sources", { list: sources })) : null);
  }));
  if (!quiet || atBottom) box.lastElementChild?.scrollIntoView({ block: "end" });
  renderQueue();
  renderSites();
}

async function reply(e) {
  e.preventDefault();
  const text = $("#sup-reply-text").value.trim();
  if (!text || !state.chat) return;
  await api("POST", `/api/support/conversations/${state.chat}/messages`, { content: text });
  $("#sup-reply-text").value = "";
  await Promise.all([openChat(state.chat), loadQueue()]);
}

async function act(action) {
  if (!state.chat) return;
  await api("POST", `/api/support/conversations/${state.chat}/state`, { action });
  await Promise.all([openChat(state.chat), loadQueue()]);
}

async function fillChoices(site) {
  const [bases, models] = await Promise.all([api("GET", "/api/knowledge-bases"), api("GET", "/api/models")]);
  const chosen = new Set(site?.knowledge_base_ids || []);
  $("#sf-knowledge").replaceChildren(...bases.data.map((kb) => h("option", { value: String(kb.id), selected: chosen.has(kb.id) }, kb.name)));
  $("#sf-model").replaceChildren(h("option", { value: "" }, t("sup.default_model")),
    ...models.data.map((m) => h("option", { value: m.id, selected: site?.model === m.id }, m.id)));
}

async function openSite(id) {
  const site = id === null ? null : await api("GET", `/api/support/sites/${id}`);
  state.site = id;
  state.chat = null;
  show("site");
  $("#sup-site-title").textContent = site ? t("sup.site_edit", { name: site.name }) : t("sup.site_new");
  $("#sf-name").value = site?.name || "";
  $("#sf-language").value = site?.language || "auto";
  $("#sf-origins").value = (site?.origins || []).join("\n");
  $("#sf-persona").value = site?.persona || "";
  $("#sf-rules").value = site?.rules || "";
  $("#sf-greeting").value = site?.greeting || "";
  $("#sf-handoff").checked = site ? site.handoff_on_no_source : true;
  $("#sf-embed").hidden = !site;
  $("#sf-embed-code").textContent = site?.embed_code || "";
  $("#sf-delete").hidden = !site;
  $("#sf-error").hidden = true;
  await fillChoices(site);
  renderSites();
  renderQueue();
}

async function saveSite(e) {
  e.preventDefault();
  const body = {
    name: $("#sf-name").value.trim(),
    language: $("#sf-language").value,
    origins: $("#sf-origins").value.split(/\s+/).filter(Boolean),
    persona: $("#sf-persona").value,
    rules: $("#sf-rules").value,
    greeting: $("#sf-greeting").value,
    knowledge_base_ids: [...$("#sf-knowledge").selectedOptions].map((o) => Number(o.value)),
    model: $("#sf-model").value || null,
    handoff_on_no_source: $("#sf-handoff").checked,
  };
  if (!body.model) delete body.model;
  try {
    const site = state.site === null
      ? await api("POST", "/api/support/sites", body)
      : await api("PATCH", `/api/support/sites/${state.site}`, body);
    state.sites = (await api("GET", "/api/support/sites")).data;
    toast(t("sup.saved"));
    await openSite(site.id);
  } catch (err) {
    $("#sf-error").textContent = err.message;
    $("#sf-error").hidden = false;
  }
}

async function deleteSite() {
  if (state.site === null) return;
  await api("DELETE", `/api/support/sites/${state.site}`);
  state.site = null;
  show(null);
  await loadSupport();
}

async function rotate() {
  if (state.site === null) return;
  await api("POST", `/api/support/sites/${state.site}/rotate-key`);
  await openSite(state.site);
}

export function initSupport() {
  const fail = (e) => toast(e.message, true);
  $("#sup-filter").addEventListener("change", (e) => {
    state.filter = e.target.value;
    loadQueue().catch(fail);
  });
  $("#sup-new-site").addEventListener("click", () => openSite(null).catch(fail));
  $("#sup-reply").addEventListener("submit", (e) => reply(e).catch(fail));
  $("#sup-reply-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("#sup-reply").requestSubmit();
  });
  $("#sup-claim").addEventListener("click", () => act("claim").catch(fail));
  $("#sup-back").addEventListener("click", () => act("assistant").catch(fail));
  $("#sup-resolve").addEventListener("click", () => act("resolve").catch(fail));
  $("#sup-site").addEventListener("submit", (e) => saveSite(e).catch(fail));
  $("#sf-delete").addEventListener("click", () => deleteSite().catch(fail));
  $("#sf-rotate").addEventListener("click", () => rotate().catch(fail));
  $("#sf-copy").addEventListener("click", () => copyText($("#sf-embed-code").textContent).then(() => toast(t("sup.copied"))));
  window.addEventListener("languagechange", () => {
    renderQueue();
    renderSites();
  });
  refreshSupportBadge();
}
