// The aigc customer-service widget: one tag on a shop's page,
//   <script src="https://AIGC-SERVER/widget.js" data-site="site_..." async></script>
// (optional: data-lang="zh|en", data-position="left"). It draws a chat button and panel in a
// shadow root (the page's styles cannot reach it, nor its styles the page), talks to the server
// it was loaded from with the site's public key, and keeps the visitor's conversation across
// page loads (localStorage). Answers stream in; their sources are listed; "talk to a person"
// hands the conversation to the shop's staff, whose replies arrive here (polled).
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.__aigcWidget) return;
  window.__aigcWidget = true;
  const key = script.dataset.site || "";
  const server = new URL(script.src, location.href).origin;
  const api = `${server}/widget/v1/sites/${encodeURIComponent(key)}`;
  const storeKey = `aigc-widget:${key}`;

  const TEXT = {
    zh: {
      open: "在线客服", close: "关闭", send: "发送", placeholder: "请输入您的问题…", person: "转人工",
      greeting: "您好！我是在线客服助手，有什么可以帮您？需要人工服务请说“转人工”。",
      waiting: "正在为您转接人工客服，请稍候…", active: "人工客服已接入", staff: "客服",
      assistant: "助手", sources: "资料来源", error: "暂时无法连接客服，请稍后再试。",
      busy: "消息太频繁了，请稍后再试。", resolved: "人工服务已结束，助手会继续为您解答。",
    },
    en: {
      open: "Chat with us", close: "Close", send: "Send", placeholder: "Type your question…", person: "Talk to a person",
      greeting: "Hi! I'm the shop's assistant. How can I help? Say \"talk to a person\" any time to reach our team.",
      waiting: "Passing you to a person on our team, please wait…", active: "You're chatting with our team",
      staff: "Staff", assistant: "Assistant", sources: "Sources", error: "Can't reach customer service right now; please try again later.",
      busy: "Too many messages; please wait a moment.", resolved: "Our team has finished; the assistant will help you again.",
    },
  };
  let lang = script.dataset.lang || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
  const t = (k) => (TEXT[lang] || TEXT.en)[k];

  const CSS = `
  :host { all: initial; }
  * { box-sizing: border-box; font-family: system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; }
  .launch { position: fixed; bottom: 20px; right: 20px; z-index: 2147483000; border: 0; border-radius: 28px;
    background: #2563eb; color: #fff; padding: 14px 20px; font-size: 15px; cursor: pointer;
    box-shadow: 0 6px 20px rgba(0,0,0,.2); }
  .left .launch, .left .panel { right: auto; left: 20px; }
  .panel { position: fixed; bottom: 84px; right: 20px; z-index: 2147483000; width: min(380px, calc(100vw - 24px));
    height: min(560px, calc(100vh - 110px)); display: flex; flex-direction: column; background: #fff; color: #111827;
    border-radius: 14px; box-shadow: 0 12px 40px rgba(0,0,0,.25); overflow: hidden; font-size: 14px; }
  .panel[hidden] { display: none; }
  header { display: flex; align-items: center; gap: 8px; padding: 12px 14px; background: #2563eb; color: #fff; }
  header .name { flex: 1; font-weight: 600; font-size: 15px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  header button { border: 1px solid rgba(255,255,255,.6); background: transparent; color: #fff; border-radius: 14px;
    padding: 4px 10px; cursor: pointer; font-size: 13px; }
  .log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 10px; background: #f8fafc; }
  .msg { max-width: 85%; padding: 8px 11px; border-radius: 12px; line-height: 1.5; white-space: pre-wrap; word-wrap: break-word; }
  .msg.user { align-self: flex-end; background: #2563eb; color: #fff; border-bottom-right-radius: 4px; }
  .msg.assistant { align-self: flex-start; background: #fff; border: 1px solid #e5e7eb; border-bottom-left-radius: 4px; }
  .msg.staff { border-color: #f59e0b; background: #fffbeb; }
  .who { display: block; font-size: 11px; color: #6b7280; margin-bottom: 2px; }
  .sources { margin-top: 6px; font-size: 12px; color: #374151; border-top: 1px dashed #e5e7eb; padding-top: 4px; }
  .sources summary { cursor: pointer; color: #2563eb; }
  .sources li { margin: 3px 0; }
  .sources .snip { color: #6b7280; display: block; white-space: normal; }
  .status { padding: 6px 12px; font-size: 12px; color: #92400e; background: #fef3c7; }
  .status[hidden] { display: none; }
  form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e5e7eb; background: #fff; }
  textarea { flex: 1; resize: none; border: 1px solid #d1d5db; border-radius: 8px; padding: 8px; font-size: 14px; height: 40px; }
  form button { border: 0; border-radius: 8px; background: #2563eb; color: #fff; padding: 0 14px; cursor: pointer; font-size: 14px; }
  form button:disabled { background: #93c5fd; cursor: default; }
  .typing::after { content: "▍"; animation: blink 1s steps(2) infinite; }
  @keyframes blink { 50% { opacity: 0; } }`;

  const el = (tag, attrs = {}, ...kids) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== false && v != null) node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid != null) node.append(kid);
    return node;
  };

  const host = el("div", { id: "aigc-support-widget" });
  const root = host.attachShadow({ mode: "open" });
  const wrap = el("div", { class: script.dataset.position === "left" ? "left" : "" });
  const launch = el("button", { type: "button", class: "launch", part: "launcher" });
  const name = el("span", { class: "name" });
  const personBtn = el("button", { type: "button", class: "person" });
  const closeBtn = el("button", { type: "button", class: "close", "aria-label": "close" }, "×");
  const log = el("div", { class: "log", role: "log", "aria-live": "polite" });
  const status = el("div", { class: "status", hidden: true });
  const input = el("textarea", { rows: "1" });
  const sendBtn = el("button", { type: "submit" });
  const form = el("form", {}, input, sendBtn);
  const panel = el("section", { class: "panel", hidden: true, role: "dialog" },
    el("header", {}, name, personBtn, closeBtn), log, status, form);
  root.append(el("style", {}, CSS), wrap);
  wrap.append(panel, launch);

  const state = { site: null, session: null, last: 0, handoff: null, busy: false, poll: null, started: false };

  function label() {
    launch.textContent = t("open");
    personBtn.textContent = t("person");
    closeBtn.title = t("close");
    input.placeholder = t("placeholder");
    sendBtn.textContent = t("send");
  }

  function saveSession() {
    try { localStorage.setItem(storeKey, JSON.stringify(state.session)); } catch { /* private mode */ }
  }

  function loadSession() {
    try { return JSON.parse(localStorage.getItem(storeKey) || "null"); } catch { return null; }
  }

  async function call(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
    const response = await fetch(api + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!response.ok) {
      let message = t(response.status === 429 ? "busy" : "error");
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  function sourcesOf(sources) {
    if (!sources || !sources.length) return null;
    return el("details", { class: "sources" }, el("summary", {}, `${t("sources")} (${sources.length})`),
      el("ol", {}, ...sources.map((s) => el("li", {},
        `[${s.n}] ${s.filename}${s.heading ? " › " + s.heading : ""}`,
        el("span", { class: "snip" }, (s.text || "").slice(0, 160) + ((s.text || "").length > 160 ? "…" : ""))))));
  }

  function bubble(m) {
    const staff = m.role === "assistant" && m.staff;
    const node = el("div", { class: `msg ${m.role}${staff ? " staff" : ""}` });
    if (m.role === "assistant") node.append(el("span", { class: "who" }, staff ? `${t("staff")} ${m.author || ""}` : t("assistant")));
    const text = el("span", { class: "text" }, m.content || "");
    node.append(text);
    const src = sourcesOf(m.sources);
    if (src) node.append(src);
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return { node, text };
  }

  function showState(handoff) {
    const was = state.handoff;
    state.handoff = handoff;
    if (handoff === "waiting" || handoff === "active") {
      status.hidden = false;
      status.textContent = t(handoff);
      if (!state.poll) state.poll = setInterval(() => refresh().catch(() => {}), 3000);
    } else {
      status.hidden = !(was === "active" || was === "waiting") || handoff !== "resolved";
      status.textContent = t("resolved");
      if (state.poll) { clearInterval(state.poll); state.poll = null; }
    }
  }

  async function refresh() {
    if (!state.session) return;
    const body = await (await call("GET", `/conversations/${state.session.conversation_id}?after=${state.last}`)).json();
    for (const m of body.messages) {
      if (m.id <= state.last) continue;
      bubble(m);
      state.last = m.id;
    }
    showState(body.handoff);
  }

  async function start() {
    if (state.started) return;
    state.started = true;
    try {
      state.site = await (await call("GET", "")).json();
      if (!script.dataset.lang && (state.site.language === "zh" || state.site.language === "en")) lang = state.site.language;
      label();
      name.textContent = state.site.name;
      const greeting = state.site.greeting || state.site.default_greeting[lang] || t("greeting");
      bubble({ role: "assistant", content: greeting, sources: [] });
      state.session = loadSession();
      if (state.session) {
        try { await refresh(); } catch (e) { if (e.status === 404 || e.status === 401) state.session = null; else throw e; }
      }
    } catch (e) {
      state.started = false;
      bubble({ role: "assistant", content: e.message, sources: [] });
    }
  }

  async function ensureSession() {
    if (state.session) return;
    const body = await (await call("POST", "/conversations")).json();
    state.session = { conversation_id: body.conversation_id, token: body.token };
    state.last = 0;
    saveSession();
  }

  // The reply's server-sent events, as they arrive.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of frame.split("\n")) if (line.startsWith("data:")) yield JSON.parse(line.slice(5));
      }
    }
  }

  async function send(text) {
    if (state.busy || !text.trim()) return;
    state.busy = true;
    sendBtn.disabled = true;
    let reply = null;
    try {
      await ensureSession();
      bubble({ role: "user", content: text });
      const response = await call("POST", `/conversations/${state.session.conversation_id}/messages`, { content: text });
      for await (const ev of events(response)) {
        if (ev.type === "start") {
          if (ev.user_message) state.last = Math.max(state.last, ev.user_message.id);
        } else if (ev.type === "delta") {
          if (!reply) { reply = bubble({ role: "assistant", content: "" }); reply.text.classList.add("typing"); }
          reply.text.textContent += ev.text;
          log.scrollTop = log.scrollHeight;
        } else if (ev.type === "done" || ev.type === "error") {
          if (reply) reply.text.classList.remove("typing");
          const m = ev.message;
          if (m) {
            if (!reply) reply = bubble({ role: "assistant", content: m.content });
            reply.text.textContent = m.content;
            const src = sourcesOf((m.sources || []).map((s) => ({ n: s.n, filename: s.document.filename, heading: s.heading, text: s.text })));
            if (src) reply.node.append(src);
            state.last = Math.max(state.last, m.id);
          }
          if (ev.type === "error") bubble({ role: "assistant", content: t("error") });
        }
      }
      await refresh();
    } catch (e) {
      if (reply) reply.text.classList.remove("typing");
      bubble({ role: "assistant", content: e.message || t("error") });
    } finally {
      state.busy = false;
      sendBtn.disabled = false;
    }
  }

  launch.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    if (!panel.hidden) { start(); input.focus(); }
  });
  closeBtn.addEventListener("click", () => { panel.hidden = true; });
  personBtn.addEventListener("click", async () => {
    try {
      await ensureSession();
      const body = await (await call("POST", `/conversations/${state.session.conversation_id}/handoff`)).json();
      showState(body.handoff);
    } catch (e) {
      bubble({ role: "assistant", content: e.message });
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });

  label();
  (document.body || document.documentElement).append(host);
})();
