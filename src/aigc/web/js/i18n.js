// UI strings in English and Chinese. The language comes from localStorage, else the browser.
// Static elements carry data-i18n="key" (text), data-i18n-placeholder / data-i18n-title;
// dynamic views call t(key, vars) when they render, and re-render on "languagechange".

const STRINGS = {
  en: {
    "app.title": "aigc",
    "tab.chat": "Chat",
    "tab.studio": "Studio",
    "lang.toggle": "中文",
    "lang.toggle.title": "Switch to Chinese",
    "chat.new": "New chat",
    "chat.search": "Search messages…",
    "chat.empty.title": "Start a conversation",
    "chat.empty.body": "Ask anything. Replies stream from the model served by this machine.",
    "chat.none": "No conversations yet",
    "chat.noresults": "No matches",
    "chat.untitled": "New conversation",
    "chat.placeholder": "Message the model…",
    "chat.placeholder.title": "Enter sends, Shift+Enter starts a new line",
    "chat.send": "Send",
    "chat.stop": "Stop",
    "chat.rename": "Rename",
    "chat.rename.prompt": "New title",
    "chat.delete": "Delete",
    "chat.delete.confirm": "Delete this conversation and all its messages?",
    "chat.export.md": "Export Markdown",
    "chat.export.json": "Export JSON",
    "chat.import": "Import JSON",
    "chat.import.done": "Conversation imported",
    "chat.settings": "Settings",
    "chat.you": "You",
    "chat.assistant": "Assistant",
    "chat.system": "System",
    "msg.copy": "Copy",
    "msg.copied": "Copied",
    "msg.edit": "Edit",
    "msg.regenerate": "Regenerate",
    "msg.good": "Good reply",
    "msg.bad": "Bad reply",
    "msg.feedback.comment": "Tell us more (optional)",
    "msg.feedback.save": "Save",
    "msg.feedback.saved": "Thanks for the feedback",
    "msg.stopped": "stopped",
    "msg.error": "error",
    "msg.truncated": "cut at max tokens",
    "msg.dropped": "not in context",
    "msg.dropped.title": "This message no longer fits in the model's context window, so the model does not see it.",
    "edit.save": "Save & regenerate",
    "edit.cancel": "Cancel",
    "edit.note": "Editing truncates: every message after this one is deleted, then the reply is generated again.",
    "ctx.meter": "{used} / {window} tokens",
    "ctx.approx": "≈",
    "ctx.dropped": "{n} older messages not in context",
    "ctx.title": "Prompt tokens of the model's context window (the reply's max tokens are kept free)",
    "settings.title": "Conversation settings",
    "settings.system": "System prompt / persona",
    "settings.system.placeholder": "e.g. You are a concise assistant who answers in Chinese.",
    "settings.model": "Model",
    "settings.temperature": "Temperature",
    "settings.top_p": "Top-p",
    "settings.max_tokens": "Max tokens",
    "settings.seed": "Seed",
    "settings.seed.placeholder": "random",
    "settings.apikey": "API key (if the server requires one)",
    "settings.save": "Save",
    "settings.saved": "Settings saved",
    "settings.close": "Close",
    "studio.title": "AIGC studio",
    "studio.subtitle": "Templates turn a short form into a well-guided prompt.",
    "studio.builtin": "built-in",
    "studio.mine": "mine",
    "studio.new": "New template",
    "studio.import": "Import",
    "studio.export": "Export mine",
    "studio.pick": "Pick a template on the left to start.",
    "studio.preview": "Show prompt",
    "studio.hide": "Hide prompt",
    "studio.run": "Generate",
    "studio.save": "Save to conversation",
    "studio.saved": "Saved as a new conversation",
    "studio.output": "Output",
    "studio.prompt": "Rendered prompt",
    "studio.model": "Model",
    "studio.json": "JSON output (follows the template's schema)",
    "studio.edit": "Edit",
    "studio.copy": "Copy as new",
    "studio.delete": "Delete",
    "studio.delete.confirm": "Delete this template?",
    "studio.imported": "{n} templates imported",
    "editor.title.new": "New template",
    "editor.title.edit": "Edit template",
    "editor.name_en": "Name (English)",
    "editor.name_zh": "Name (Chinese)",
    "editor.description": "Description",
    "editor.system": "System prompt (optional)",
    "editor.body": "Prompt (jinja2: use {{ field_name }})",
    "editor.fields": "Fields (JSON list: name, type text|textarea|select|number, label, options, default, required)",
    "editor.model": "Preferred model (optional)",
    "editor.params": "Parameters (JSON)",
    "editor.save": "Save template",
    "editor.cancel": "Cancel",
    "editor.badjson": "{what} is not valid JSON",
    "error.generic": "Something went wrong",
    "error.network": "Cannot reach the server",
    "time.now": "just now",
  },
  zh: {
    "app.title": "aigc",
    "tab.chat": "对话",
    "tab.studio": "创作工坊",
    "lang.toggle": "EN",
    "lang.toggle.title": "切换到英文",
    "chat.new": "新对话",
    "chat.search": "搜索消息…",
    "chat.empty.title": "开始一段对话",
    "chat.empty.body": "随便问点什么。回复由本机部署的模型流式生成。",
    "chat.none": "还没有对话",
    "chat.noresults": "没有匹配的结果",
    "chat.untitled": "新对话",
    "chat.placeholder": "给模型发消息…",
    "chat.placeholder.title": "Enter 发送，Shift+Enter 换行",
    "chat.send": "发送",
    "chat.stop": "停止",
    "chat.rename": "重命名",
    "chat.rename.prompt": "新标题",
    "chat.delete": "删除",
    "chat.delete.confirm": "删除这个对话及其全部消息？",
    "chat.export.md": "导出 Markdown",
    "chat.export.json": "导出 JSON",
    "chat.import": "导入 JSON",
    "chat.import.done": "对话已导入",
    "chat.settings": "设置",
    "chat.you": "你",
    "chat.assistant": "助手",
    "chat.system": "系统",
    "msg.copy": "复制",
    "msg.copied": "已复制",
    "msg.edit": "编辑",
    "msg.regenerate": "重新生成",
    "msg.good": "回答很好",
    "msg.bad": "回答不好",
    "msg.feedback.comment": "补充说明（可选）",
    "msg.feedback.save": "保存",
    "msg.feedback.saved": "感谢反馈",
    "msg.stopped": "已停止",
    "msg.error": "出错",
    "msg.truncated": "达到最大长度",
    "msg.dropped": "不在上下文中",
    "msg.dropped.title": "这条消息已超出模型的上下文窗口，模型看不到它。",
    "edit.save": "保存并重新生成",
    "edit.cancel": "取消",
    "edit.note": "编辑会截断对话：这条消息之后的所有消息都会被删除，然后重新生成回复。",
    "ctx.meter": "{used} / {window} 词元",
    "ctx.approx": "约",
    "ctx.dropped": "{n} 条较早的消息不在上下文中",
    "ctx.title": "提示占用的上下文窗口词元数（回复的最大长度预留在外）",
    "settings.title": "对话设置",
    "settings.system": "系统提示 / 人设",
    "settings.system.placeholder": "例如：你是一个简洁的助手，用中文回答。",
    "settings.model": "模型",
    "settings.temperature": "温度",
    "settings.top_p": "Top-p",
    "settings.max_tokens": "最大词元数",
    "settings.seed": "随机种子",
    "settings.seed.placeholder": "随机",
    "settings.apikey": "API 密钥（服务器要求时填写）",
    "settings.save": "保存",
    "settings.saved": "设置已保存",
    "settings.close": "关闭",
    "studio.title": "AIGC 创作工坊",
    "studio.subtitle": "模板把简短的表单变成引导充分的提示词。",
    "studio.builtin": "内置",
    "studio.mine": "我的",
    "studio.new": "新建模板",
    "studio.import": "导入",
    "studio.export": "导出我的模板",
    "studio.pick": "从左侧选择一个模板开始。",
    "studio.json": "JSON 输出（按模板的结构）",
    "studio.preview": "查看提示词",
    "studio.hide": "隐藏提示词",
    "studio.run": "生成",
    "studio.save": "保存到对话",
    "studio.saved": "已保存为新对话",
    "studio.output": "输出",
    "studio.prompt": "渲染后的提示词",
    "studio.model": "模型",
    "studio.edit": "编辑",
    "studio.copy": "复制为新模板",
    "studio.delete": "删除",
    "studio.delete.confirm": "删除这个模板？",
    "studio.imported": "已导入 {n} 个模板",
    "editor.title.new": "新建模板",
    "editor.title.edit": "编辑模板",
    "editor.name_en": "名称（英文）",
    "editor.name_zh": "名称（中文）",
    "editor.description": "描述",
    "editor.system": "系统提示（可选）",
    "editor.body": "提示词（jinja2：用 {{ 字段名 }} 引用字段）",
    "editor.fields": "字段（JSON 列表：name、type text|textarea|select|number、label、options、default、required）",
    "editor.model": "首选模型（可选）",
    "editor.params": "参数（JSON）",
    "editor.save": "保存模板",
    "editor.cancel": "取消",
    "editor.badjson": "{what} 不是合法的 JSON",
    "error.generic": "出错了",
    "error.network": "无法连接服务器",
    "time.now": "刚刚",
  },
};

const KEY = "aigc.lang";

function initialLanguage() {
  const saved = localStorage.getItem(KEY);
  if (saved === "en" || saved === "zh") return saved;
  const browser = (navigator.language || "en").toLowerCase();
  return browser.startsWith("zh") ? "zh" : "en";
}

let current = initialLanguage();

export function lang() {
  return current;
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

// A {zh, en} object from the server (template names, labels) in the current language.
export function pick(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  return value[current] || value.en || value.zh || "";
}

export function applyStatic(root = document) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

export function setLanguage(value) {
  current = value === "zh" ? "zh" : "en";
  localStorage.setItem(KEY, current);
  applyStatic();
  window.dispatchEvent(new CustomEvent("languagechange", { detail: current }));
}

export function formatNumber(n) {
  return new Intl.NumberFormat(current === "zh" ? "zh-CN" : "en-US").format(n);
}
