// One chat message as DOM, and the context-window meter. Rendering a whole conversation builds
// every node into one DocumentFragment and attaches it once (one layout for 1,000 messages).

import { copyText, h, toast } from "./dom.js";
import { formatNumber, t } from "./i18n.js";
import { icon } from "./icons.js";
import { renderMarkdown } from "./markdown.js";

// actions: {onEdit(message, node), onRegenerate(), onFeedback(message, rating, comment),
//           onSwitch(messageId), onFork(message)}
export function messageNode(m, { dropped = false, actions = {} } = {}) {
  const role = m.role === "user" ? "user" : m.role === "assistant" ? "assistant" : "system";
  const node = h("article", { class: `msg ${role}${dropped ? " dropped" : ""}`, dataset: { id: m.id ?? "", role } });
  const label = t(role === "user" ? "chat.you" : role === "assistant" ? "chat.assistant" : "chat.system");
  const head = h("div", { class: "msg-head" }, h("span", { class: "msg-role" }, label));
  if (role === "assistant" && m.model) head.append(h("span", {}, m.model));
  if (m.finish_reason === "stopped") head.append(h("span", { class: "badge warn" }, t("msg.stopped")));
  if (m.finish_reason === "error") head.append(h("span", { class: "badge err" }, t("msg.error")));
  if (m.finish_reason === "length") head.append(h("span", { class: "badge" }, t("msg.truncated")));
  if (m.finish_reason === "no_source") head.append(h("span", { class: "badge warn no-source" }, t("msg.no_source")));
  const filtered = m.finish_reason === "content_filter";
  if (filtered) head.append(h("span", { class: "badge err content-filter" }, t("msg.content_filter")));
  if (dropped) head.append(h("span", { class: "badge warn dropped-badge", title: t("msg.dropped.title") }, t("msg.dropped")));
  if (m.siblings?.length > 1 && actions.onSwitch) head.append(branchNav(m, actions));
  const body = h("div", { class: "msg-body" });
  body.append(renderMarkdown(m.content, t("msg.copy")));
  const main = h("div", { class: "msg-main" }, head);
  if (role === "assistant" && m.reasoning) main.append(reasoningBlock(m.reasoning));
  main.append(body);
  // Blocked input (the refusal is the whole reply) or a reply cut mid-way: say which, plainly.
  if (filtered) main.append(h("p", { class: "moderation-note" }, t("msg.content_filter.note")));
  if (role === "assistant" && Array.isArray(m.sources) && m.sources.length) main.append(sourcesList(m.sources));
  node.append(h("div", { class: "avatar", "aria-hidden": "true" }, role === "user" ? "U" : "AI"), main);
  if (m.id != null) {
    pending.set(node, { m, actions });
    if (m.feedback) ensureActions(node); // a rated reply shows its rating without a hover
  }
  return node;
}

// ‹ 2/3 ›: the message has siblings (other versions of an edit, other replies); the arrows show
// the branch through the previous or next one. Always visible, unlike the action bar.
function branchNav(m, actions) {
  const at = m.siblings.indexOf(m.id);
  const step = (delta, label, glyph) => h("button", { type: "button", class: `icon-btn branch-${delta < 0 ? "prev" : "next"}`,
    title: t(label), "aria-label": t(label), disabled: !m.siblings[at + delta],
    onclick: () => actions.onSwitch(m.siblings[at + delta]) }, glyph);
  return h("span", { class: "branch-nav" }, step(-1, "msg.branch.prev", "‹"),
    h("span", { class: "branch-count", title: t("msg.branch.title") }, `${at + 1}/${m.siblings.length}`),
    step(1, "msg.branch.next", "›"));
}

// A reasoning model's thinking, collapsed above its answer (plain text: it is a draft, not the
// answer). `live`: still thinking, the summary says so.
function reasoningBlock(text, live = false) {
  return h("details", { class: "reasoning" }, h("summary", {}, t(live ? "msg.thinking" : "msg.reasoning")),
    h("div", { class: "reasoning-body" }, text));
}

// The knowledge-base passages a grounded reply cited: [n] file › heading; a click opens the
// document at the cited span.
function sourcesList(sources) {
  const list = h("ol", { class: "sources" });
  for (const s of sources) {
    const label = s.document.filename + (s.heading ? ` › ${s.heading}` : "");
    list.append(h("li", {},
      h("button", { type: "button", class: "source-link", title: s.text, onclick: () => openSource(s) },
        h("span", { class: "source-n" }, `[${s.n}]`), " ", label)));
  }
  return h("div", { class: "sources-box" }, h("div", { class: "sources-title" }, t("msg.sources")), list);
}

async function openSource(s) {
  const { api } = await import("./api.js");
  const doc = await api("GET", `/api/knowledge-bases/${s.knowledge_base_id}/documents/${s.document.id}`);
  const dialog = document.getElementById("source-dialog");
  document.getElementById("source-title").textContent = s.document.filename + (s.heading ? ` › ${s.heading}` : "");
  const mark = h("mark", { id: "source-mark" }, doc.text.slice(s.start, s.end));
  document.getElementById("source-text").replaceChildren(doc.text.slice(0, s.start), mark, doc.text.slice(s.end));
  dialog.showModal();
  mark.scrollIntoView({ block: "center" });
}

// Action bars are built when a message is first hovered or focused (see watchActions): a long
// conversation then opens with a fraction of the DOM nodes and listeners.
const pending = new WeakMap();

export function ensureActions(node) {
  const entry = pending.get(node);
  if (!entry) return;
  pending.delete(node);
  const last = !node.nextElementSibling;
  node.querySelector(".msg-main").append(actionBar(entry.m, last, entry.actions, node));
}

export function watchActions(container) {
  const build = (e) => {
    const node = e.target.closest?.(".msg");
    if (node) ensureActions(node);
  };
  container.addEventListener("pointerover", build);
  container.addEventListener("focusin", build);
}

function actionBar(m, last, actions, node) {
  const bar = h("div", { class: "msg-actions" });
  const copy = h("button", { type: "button", class: "icon-btn", title: t("msg.copy"), "aria-label": t("msg.copy") }, icon("copy"));
  copy.addEventListener("click", async () => {
    await copyText(m.content);
    toast(t("msg.copied"));
  });
  bar.append(copy);
  if (actions.onFork) {
    bar.append(h("button", { type: "button", class: "icon-btn fork-btn", title: t("msg.fork"), "aria-label": t("msg.fork"),
      onclick: () => actions.onFork(m) }, icon("fork")));
  }
  if (m.role === "user" && actions.onEdit) {
    bar.append(h("button", { type: "button", class: "icon-btn edit-btn", title: t("msg.edit"), "aria-label": t("msg.edit"),
      onclick: () => actions.onEdit(m, node) }, icon("edit")));
  }
  if (m.role === "assistant") {
    if (last && actions.onRegenerate) {
      bar.append(h("button", { type: "button", class: "icon-btn regen-btn", title: t("msg.regenerate"),
        "aria-label": t("msg.regenerate"), onclick: () => actions.onRegenerate() }, icon("refresh")));
    }
    const rating = m.feedback?.rating;
    for (const [value, glyph, key] of [[1, "up", "msg.good"], [-1, "down", "msg.bad"]]) {
      bar.append(h("button", { type: "button", class: `icon-btn fb-btn${rating === value ? " on" : ""}`, title: t(key),
        "aria-label": t(key), dataset: { rating: value }, onclick: () => feedbackForm(m, value, bar, actions) }, icon(glyph)));
    }
    if (rating) bar.classList.add("keep");
  }
  return bar;
}

function feedbackForm(m, rating, bar, actions) {
  actions.onFeedback?.(m, rating, m.feedback?.comment || "");
  for (const b of bar.querySelectorAll(".fb-btn")) b.classList.toggle("on", Number(b.dataset.rating) === rating);
  bar.classList.add("keep");
  bar.parentElement.querySelector(".feedback-form")?.remove();
  const input = h("input", { type: "text", maxlength: 4000, placeholder: t("msg.feedback.comment") });
  input.value = m.feedback?.comment || "";
  const form = h("form", { class: "feedback-form" }, input,
    h("button", { type: "submit", class: "btn small" }, t("msg.feedback.save")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    actions.onFeedback?.(m, rating, input.value);
    form.remove();
    toast(t("msg.feedback.saved"));
  });
  bar.after(form);
  input.focus();
}

// The message being streamed: its body is re-rendered (throttled to frames) as text arrives; a
// reasoning model's thinking grows in a collapsed block above it (opened or not, as the user left it).
export class StreamingMessage {
  constructor(model) {
    this.text = "";
    this.node = messageNode({ role: "assistant", content: "", model });
    this.body = this.node.querySelector(".msg-body");
    this.body.classList.add("cursor");
    this.pending = false;
    this.reasoning = null;
  }

  think(text) {
    if (!this.reasoning) {
      this.reasoning = reasoningBlock("", true);
      this.body.before(this.reasoning);
    }
    this.reasoning.querySelector(".reasoning-body").append(text);
  }

  append(text) {
    if (this.reasoning && !this.text) this.reasoning.querySelector("summary").textContent = t("msg.reasoning");
    this.text += text;
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.body.replaceChildren(renderMarkdown(this.text, t("msg.copy")));
    });
  }
}

export function updateMeter(report) {
  const meter = document.getElementById("meter");
  if (!report || report.used_tokens == null) {
    meter.hidden = true;
    return;
  }
  const used = report.used_tokens;
  const windowSize = report.window;
  const share = Math.min(1, used / windowSize);
  meter.hidden = false;
  meter.classList.toggle("warn", share > 0.75 && share <= 0.95);
  meter.classList.toggle("full", share > 0.95);
  document.getElementById("meter-fill").style.width = `${(share * 100).toFixed(1)}%`;
  const prefix = report.exact === false ? t("ctx.approx") : "";
  document.getElementById("meter-text").textContent =
    prefix + t("ctx.meter", { used: formatNumber(used), window: formatNumber(windowSize) });
  const note = document.getElementById("dropped-note");
  const dropped = report.dropped_messages || [];
  note.hidden = dropped.length === 0;
  note.textContent = t("ctx.dropped", { n: dropped.length });
}

// Mark the messages the model no longer sees (after a reply told us which).
export function markDropped(container, ids) {
  const set = new Set((ids || []).map(String));
  for (const node of container.querySelectorAll(".msg")) {
    const isDropped = set.has(node.dataset.id);
    if (isDropped === node.classList.contains("dropped")) continue;
    node.classList.toggle("dropped", isDropped);
    const head = node.querySelector(".msg-head");
    head.querySelector(".dropped-badge")?.remove();
    if (isDropped) head.append(h("span", { class: "badge warn dropped-badge", title: t("msg.dropped.title") }, t("msg.dropped")));
  }
}

// Copy buttons inside rendered code blocks (one delegated listener for the whole page).
document.addEventListener("click", async (e) => {
  const button = e.target.closest("[data-copy-code]");
  if (!button) return;
  await copyText(button.closest(".code-block").querySelector("code").textContent);
  button.textContent = t("msg.copied");
  setTimeout(() => (button.textContent = t("msg.copy")), 1200);
});
