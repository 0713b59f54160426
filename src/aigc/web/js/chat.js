// The chat tab: conversation list and search, the open conversation, streaming replies (send, stop,
// regenerate, edit), branches (an edit or a regenerated reply is a sibling: ‹ 2/3 › switches, "fork"
// copies the path into a new conversation), feedback, export/import. The server sends the active
// path only. The open conversation's id lives in the URL hash (#/c/12) so a reload comes back to it.

import { api, download, pickJsonFile, stream } from "./api.js";
import { $, h, highlighted, relativeTime, toast } from "./dom.js";
import { lang, t } from "./i18n.js";
import { icon } from "./icons.js";
import { StreamingMessage, markDropped, messageNode, updateMeter, watchActions } from "./messages.js";
import { draftSettings, initSettings, loadModels } from "./settings.js";

const state = {
  list: [],
  query: "",
  current: null, // the open conversation with its messages, or null for a new (unsaved) chat
  context: null,
  streaming: null, // {cid, controller, stopTimer}
};

const messagesBox = () => $("#messages");

// ---------------------------------------------------------------- the list

export async function refreshList() {
  const query = state.query.trim();
  const result = await api("GET", query ? `/api/conversations?q=${encodeURIComponent(query)}` : "/api/conversations");
  state.list = result.data;
  renderList();
}

function renderList() {
  const list = $("#conv-list");
  const query = state.query.trim();
  if (!state.list.length) {
    list.replaceChildren(h("li", { class: "conv-empty" }, t(query ? "chat.noresults" : "chat.none")));
    return;
  }
  const frag = document.createDocumentFragment();
  for (const c of state.list) {
    const sub = query && c.match?.snippet
      ? highlighted(c.match.snippet, query)
      : relativeTime(c.updated_at, lang()) + (c.message_count != null ? ` · ${c.message_count}` : "");
    const title = c.title || t("chat.untitled");
    // A search hit may sit on a branch that is not on screen: opening it shows that branch.
    const item = h("li", { class: `conv-item${state.current?.id === c.id ? " active" : ""}`, dataset: { id: c.id },
      onclick: () => openConversation(c.id, query ? c.match?.message_id : null).catch(showError) },
      h("div", { class: "conv-main" }, h("div", { class: "conv-title" }, query ? highlighted(title, query) : title),
        h("div", { class: "conv-sub" }, sub)),
      h("div", { class: "conv-actions" },
        h("button", { type: "button", class: "icon-btn rename-btn", title: t("chat.rename"), "aria-label": t("chat.rename"),
          onclick: (e) => { e.stopPropagation(); rename(c); } }, icon("edit")),
        h("button", { type: "button", class: "icon-btn delete-btn", title: t("chat.delete"), "aria-label": t("chat.delete"),
          onclick: (e) => { e.stopPropagation(); remove(c); } }, icon("trash"))));
    frag.append(item);
  }
  list.replaceChildren(frag);
}

async function rename(c) {
  const title = prompt(t("chat.rename.prompt"), c.title || "");
  if (title == null || !title.trim()) return;
  await api("PATCH", `/api/conversations/${c.id}`, { title: title.trim().slice(0, 200) });
  if (state.current?.id === c.id) {
    state.current.title = title.trim();
    $("#chat-title").textContent = state.current.title;
  }
  await refreshList();
}

async function remove(c) {
  if (!confirm(t("chat.delete.confirm"))) return;
  await api("DELETE", `/api/conversations/${c.id}`);
  if (state.current?.id === c.id) newChat();
  await refreshList();
}

// ---------------------------------------------------------------- the open conversation

export function newChat() {
  state.current = null;
  state.context = null;
  if (location.hash) history.replaceState(null, "", location.pathname);
  renderConversation();
  renderList();
  $("#prompt").focus();
}

// `messageId`: a message to show (a search hit), switching to its branch when it is not on screen.
export async function openConversation(id, messageId = null) {
  if (state.streaming) return;
  const started = performance.now();
  state.current = await api("GET", `/api/conversations/${id}`);
  if (messageId != null && !state.current.messages.some((m) => m.id === messageId)) {
    state.current = await api("POST", `/api/conversations/${id}/messages/${messageId}/switch`);
  }
  const fetched = performance.now();
  if (location.hash !== `#/c/${id}`) history.replaceState(null, "", `#/c/${id}`);
  renderConversation();
  if (messageId != null) messagesBox().querySelector(`.msg[data-id="${messageId}"]`)?.scrollIntoView({ block: "center" });
  window.aigcPerf = { fetchMs: fetched - started, renderMs: performance.now() - fetched, messages: state.current.messages.length };
  renderList();
  document.body.classList.remove("sidebar-open");
  loadContext();
}

async function loadContext() {
  if (!state.current) return updateMeter(null);
  try {
    state.context = await api("GET", `/api/conversations/${state.current.id}/context`);
  } catch {
    state.context = null; // e.g. the model is still loading: no meter yet
  }
  updateMeter(state.context);
  markDropped(messagesBox(), state.context?.dropped_messages);
}

export function renderConversation() {
  const box = messagesBox();
  const c = state.current;
  $("#chat-title").textContent = c ? c.title || t("chat.untitled") : t("chat.new");
  $("#head-actions").hidden = false;
  $("#export-md").hidden = $("#export-json").hidden = !c;
  if (!c || !c.messages.length) {
    box.replaceChildren(h("div", { class: "empty-state" }, h("h2", {}, t("chat.empty.title")), h("p", {}, t("chat.empty.body"))));
    box.dataset.rendered = "0";
    updateMeter(c ? state.context : null);
    return;
  }
  const dropped = new Set(state.context?.dropped_messages || []);
  const frag = document.createDocumentFragment();
  for (const m of c.messages) frag.append(messageNode(m, { dropped: dropped.has(m.id), actions }));
  box.replaceChildren(frag);
  box.dataset.rendered = String(c.messages.length);
  box.scrollTop = box.scrollHeight;
}

const actions = {
  onEdit: (m, node) => startEdit(m, node),
  onRegenerate: () => regenerate(),
  onFeedback: async (m, rating, comment) => {
    m.feedback = await api("PUT", `/api/messages/${m.id}/feedback`, { rating, comment });
  },
  onSwitch: (id) => switchBranch(id).catch(showError),
  onFork: (m) => fork(m).catch(showError),
};

// ---------------------------------------------------------------- branches

// Show the branch through message `id` (a sibling): the server answers with the new active path.
async function switchBranch(id) {
  const c = state.current;
  if (!c || state.streaming) return;
  state.current = await api("POST", `/api/conversations/${c.id}/messages/${id}/switch`);
  renderConversation();
  messagesBox().querySelector(`.msg[data-id="${id}"]`)?.scrollIntoView({ block: "nearest" });
  loadContext();
}

async function fork(m) {
  const c = state.current;
  if (!c || state.streaming) return;
  const created = await api("POST", `/api/conversations/${c.id}/messages/${m.id}/fork`);
  toast(t("msg.fork.done"));
  await refreshList();
  await openConversation(created.id);
}

// ---------------------------------------------------------------- replies

function setStreaming(on) {
  $("#send").hidden = on;
  $("#stop").hidden = !on;
  document.body.classList.toggle("streaming", on);
}

// Run one reply stream; `pendingUser` is the user's message shown until the server confirms it.
async function runReply(path, body, { pendingUser = null } = {}) {
  const c = state.current;
  const box = messagesBox();
  box.querySelector(".empty-state")?.remove();
  if (pendingUser) box.append(pendingUser);
  const live = new StreamingMessage(c.model);
  box.append(live.node);
  box.scrollTop = box.scrollHeight;
  const controller = new AbortController();
  state.streaming = { cid: c.id, controller, stopTimer: null };
  setStreaming(true);
  let finished = false;
  try {
    await stream(path, body, (event) => {
      if (event.type === "start") {
        if (event.user_message) {
          c.messages.push(event.user_message);
          pendingUser?.replaceWith(messageNode(event.user_message, { actions }));
        }
        live.node.querySelector(".msg-head span:nth-child(2)")?.remove();
        live.node.querySelector(".msg-head").append(h("span", {}, event.model));
        state.context = event.context;
        updateMeter(event.context);
        markDropped(box, event.context.dropped_messages);
      } else if (event.type === "delta" || event.type === "reasoning") {
        const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
        if (event.type === "reasoning") live.think(event.text);
        else live.append(event.text);
        if (atBottom) requestAnimationFrame(() => (box.scrollTop = box.scrollHeight));
      } else if (event.type === "done" || event.type === "error") {
        finished = true;
        if (event.message) {
          c.messages.push(event.message);
          const node = messageNode(event.message, { actions });
          const block = node.querySelector(".reasoning");
          if (block && live.reasoning?.open) block.open = true; // as the user left it
          live.node.replaceWith(node);
        } else live.node.remove();
        if (event.context) {
          state.context = event.context;
          updateMeter(event.context);
        }
        if (event.type === "error") toast(event.error?.message || t("error.generic"), true);
      }
    }, controller.signal);
  } catch (e) {
    pendingUser?.remove();
    live.node.remove();
    throw e;
  } finally {
    clearTimeout(state.streaming?.stopTimer);
    state.streaming = null;
    setStreaming(false);
  }
  if (!finished) {
    // The stream was cut (stop fallback, network): the server kept the partial reply; reload it.
    await openConversation(c.id);
  } else {
    refreshRegenerateButtons();
  }
  refreshList();
}

function refreshRegenerateButtons() {
  // Only the newest message can be regenerated: drop the button from every earlier one.
  const nodes = messagesBox().querySelectorAll(".msg");
  const lastNode = nodes[nodes.length - 1];
  for (const b of messagesBox().querySelectorAll(".regen-btn")) if (!lastNode.contains(b)) b.remove();
}

async function send(text) {
  if (!state.current) {
    const draft = draftSettings();
    const created = await api("POST", "/api/conversations", draft);
    state.current = { ...created, messages: [] };
    history.replaceState(null, "", `#/c/${created.id}`);
  }
  const c = state.current;
  const pendingUser = messageNode({ role: "user", content: text });
  $("#chat-title").textContent = c.title || text.slice(0, 60);
  await runReply(`/api/conversations/${c.id}/messages`, { content: text }, { pendingUser });
  if (!c.title) c.title = state.list.find((x) => x.id === c.id)?.title || "";
}

async function regenerate() {
  const c = state.current;
  if (!c || state.streaming) return;
  while (c.messages.length && c.messages[c.messages.length - 1].role === "assistant") {
    const gone = c.messages.pop();
    messagesBox().querySelector(`.msg[data-id="${gone.id}"]`)?.remove();
  }
  await runReply(`/api/conversations/${c.id}/regenerate`, {}).catch(showError);
}

function startEdit(m, node) {
  if (state.streaming) return;
  const body = node.querySelector(".msg-body");
  const area = h("textarea", { rows: Math.min(10, Math.max(2, m.content.split("\n").length)) });
  area.value = m.content;
  const box = h("div", { class: "edit-box" }, area, h("div", { class: "edit-note" }, t("edit.note")),
    h("div", { class: "edit-row" },
      h("button", { type: "button", class: "btn ghost small", onclick: () => renderConversation() }, t("edit.cancel")),
      h("button", { type: "button", class: "btn primary small edit-save", onclick: () => saveEdit(m, area.value) }, t("edit.save"))));
  body.replaceWith(box);
  node.querySelector(".msg-actions")?.remove();
  area.focus();
}

async function saveEdit(m, text) {
  if (!text.trim()) return;
  const c = state.current;
  const index = c.messages.findIndex((x) => x.id === m.id);
  c.messages = c.messages.slice(0, index); // the edited message comes back in the "start" event
  const box = messagesBox();
  const nodes = [...box.querySelectorAll(".msg")];
  nodes.slice(index).forEach((n) => n.remove());
  const pendingUser = messageNode({ role: "user", content: text });
  await runReply(`/api/conversations/${c.id}/messages/${m.id}/edit`, { content: text }, { pendingUser }).catch(showError);
}

async function stop() {
  const s = state.streaming;
  if (!s) return;
  $("#stop").disabled = true;
  try {
    await api("POST", `/api/conversations/${s.cid}/stop`);
  } finally {
    $("#stop").disabled = false;
  }
  // The server ends the stream with the partial reply; if it does not, cut the connection.
  s.stopTimer = setTimeout(() => s.controller.abort(), 3000);
}

function showError(e) {
  toast(e.status === 0 ? t("error.network") : e.message || t("error.generic"), true);
}

// ---------------------------------------------------------------- export / import

async function exportAs(format) {
  const c = state.current;
  if (!c) return;
  const data = await api("GET", `/api/conversations/${c.id}/export?format=${format}`);
  if (format === "json") download(`conversation-${c.id}.json`, JSON.stringify(data, null, 2), "application/json");
  else download(`conversation-${c.id}.md`, data, "text/markdown");
}

async function importChat() {
  const data = await pickJsonFile();
  if (!data) return;
  const created = await api("POST", "/api/conversations/import", data);
  toast(t("chat.import.done"));
  await refreshList();
  await openConversation(created.id);
}

// ---------------------------------------------------------------- wiring

export function currentConversation() {
  return state.current;
}

// A view scrolled to the newest message stays there when the box itself resizes (the
// "left out of context" note appears above it, the composer grows).
function stickToBottom(box) {
  let stuck = true;
  box.addEventListener("scroll", () => (stuck = box.scrollHeight - box.scrollTop - box.clientHeight < 80));
  new ResizeObserver(() => {
    if (stuck) box.scrollTop = box.scrollHeight;
  }).observe(box);
}

export async function initChat() {
  watchActions(messagesBox());
  stickToBottom(messagesBox());
  const promptBox = $("#prompt");
  const autosize = () => {
    promptBox.style.height = "auto";
    promptBox.style.height = `${Math.min(promptBox.scrollHeight, 220)}px`;
  };
  promptBox.addEventListener("input", autosize);
  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = promptBox.value;
    if (!text.trim() || state.streaming) return;
    promptBox.value = "";
    autosize();
    send(text).catch((err) => {
      promptBox.value = text;
      showError(err);
    });
  });
  $("#stop").addEventListener("click", () => stop().catch(showError));
  $("#new-chat").addEventListener("click", () => newChat());
  $("#export-md").addEventListener("click", () => exportAs("markdown").catch(showError));
  $("#export-json").addEventListener("click", () => exportAs("json").catch(showError));
  $("#import-chat").addEventListener("click", () => importChat().catch(showError));
  let searchTimer = null;
  $("#search").addEventListener("input", (e) => {
    state.query = e.target.value;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => refreshList().catch(showError), 200);
  });
  window.addEventListener("languagechange", () => {
    renderList();
    if (!state.streaming) renderConversation();
    updateMeter(state.context);
  });
  initSettings({ current: () => state.current, onSaved: (c) => {
    if (c) {
      Object.assign(state.current, c);
      loadContext();
    }
    refreshList();
  } });
  await loadModels().catch(showError);
  await refreshList().catch(showError);
  const match = location.hash.match(/^#\/c\/(\d+)$/);
  if (match) await openConversation(Number(match[1])).catch(() => newChat());
  else newChat();
}

export { showError };
