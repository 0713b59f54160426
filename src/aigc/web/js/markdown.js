// A small Markdown renderer that builds DOM nodes directly: text only ever enters the page through
// text nodes (createTextNode / textContent), never through innerHTML, so model or user output
// like <script> or <img onerror=...> shows up as the literal text it is. Links keep only http(s)
// URLs and open with rel="noopener noreferrer".
//
// Supported: headings, paragraphs (single newlines kept), bold, italic, strikethrough, inline code,
// fenced code blocks (with a copy button), ordered/unordered lists (nested by indentation),
// block quotes, horizontal rules, links and bare URLs.

const SAFE_URL = /^https?:\/\/[^\s]+$/i;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function link(text, url) {
  if (!SAFE_URL.test(url)) return document.createTextNode(text === url ? url : `${text} (${url})`);
  const a = el("a");
  a.setAttribute("href", url);
  a.setAttribute("target", "_blank");
  a.setAttribute("rel", "noopener noreferrer");
  // Link text with a URL in it stays plain text (a bare URL would otherwise link itself forever).
  a.append(/https?:\/\//i.test(text) ? document.createTextNode(text) : inline(text));
  return a;
}

// One regex finds the next inline construct; its groups tell which.
const INLINE = new RegExp(
  [
    "(`+)([^`][\\s\\S]*?)\\1(?!`)", // 1,2: code span
    "\\[([^\\]\\n]+)\\]\\(([^)\\s]+)\\)", // 3,4: [text](url)
    "\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*", // 5: bold
    "(?<![\\p{L}\\p{N}_])__(?=\\S)([\\s\\S]*?\\S)__(?![\\p{L}\\p{N}_])", // 6: bold
    "~~(?=\\S)([\\s\\S]*?\\S)~~", // 7: strikethrough
    "\\*(?=[^\\s*])([\\s\\S]*?[^\\s*])\\*", // 8: italic
    "(?<![\\p{L}\\p{N}_])_(?=[^\\s_])([\\s\\S]*?[^\\s_])_(?![\\p{L}\\p{N}_])", // 9: italic
    "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"。，；：！？）])", // 10: bare URL
  ].join("|"),
  "gu",
);

export function inline(text) {
  const out = document.createDocumentFragment();
  let at = 0;
  INLINE.lastIndex = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > at) out.append(text.slice(at, m.index));
    if (m[1] !== undefined) out.append(el("code", null, m[2].replace(/^ (.*) $/s, "$1")));
    else if (m[3] !== undefined) out.append(link(m[3], m[4]));
    else if (m[5] !== undefined || m[6] !== undefined) {
      const b = el("strong");
      b.append(inline(m[5] ?? m[6]));
      out.append(b);
    } else if (m[7] !== undefined) {
      const s = el("del");
      s.append(inline(m[7]));
      out.append(s);
    } else if (m[8] !== undefined || m[9] !== undefined) {
      const i = el("em");
      i.append(inline(m[8] ?? m[9]));
      out.append(i);
    } else if (m[10] !== undefined) out.append(link(m[10], m[10]));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.append(text.slice(at));
  return out;
}

function paragraph(lines) {
  const p = el("p");
  lines.forEach((line, i) => {
    if (i) p.append(el("br"));
    p.append(inline(line));
  });
  return p;
}

export function codeBlock(code, language, copyLabel = "Copy") {
  const box = el("div", "code-block");
  const head = el("div", "code-head");
  head.append(el("span", "code-lang", language || "text"));
  const copy = el("button", "code-copy", copyLabel);
  copy.type = "button";
  copy.dataset.copyCode = "";
  head.append(copy);
  const pre = el("pre");
  const codeEl = el("code", null, code);
  if (language) codeEl.dataset.lang = language;
  pre.append(codeEl);
  box.append(head, pre);
  return box;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;

function list(lines, start, copyLabel) {
  // Items at the first item's indentation belong to this list; deeper lines nest inside items.
  const first = lines[start].match(ITEM);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const root = el(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) root.start = parseInt(first[2], 10);
  let i = start;
  let item = null;
  let body = [];
  const flush = () => {
    if (item) item.append(...renderBlocks(body, copyLabel, true));
  };
  while (i < lines.length) {
    const line = lines[i];
    const m = line.match(ITEM);
    if (m && m[1].length === indent && /\d/.test(m[2]) === ordered) {
      flush();
      item = el("li");
      root.append(item);
      body = [m[3]];
    } else if (line.trim() === "") {
      const next = lines[i + 1];
      if (next === undefined || !(next.match(/^\s*/)[0].length > indent || (next.match(ITEM) || [])[1]?.length === indent)) break;
      body.push("");
    } else if (line.match(/^\s*/)[0].length > indent) {
      body.push(line.slice(Math.min(indent + 2, line.match(/^\s*/)[0].length)));
    } else if (!m && body.length && body[body.length - 1] !== "") {
      body.push(line); // a lazy continuation line
    } else break;
    i += 1;
  }
  flush();
  return [root, i];
}

function renderBlocks(lines, copyLabel, tight = false) {
  const blocks = [];
  let para = [];
  const endPara = () => {
    if (para.length) blocks.push(tight && blocks.length === 0 ? inlineLines(para) : paragraph(para));
    para = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(FENCE);
    if (fence) {
      endPara();
      const marker = fence[1];
      const code = [];
      i += 1;
      while (i < lines.length && !(lines[i].trim().startsWith(marker[0].repeat(marker.length)) && lines[i].trim().replace(/[`~]/g, "") === "")) {
        code.push(lines[i]);
        i += 1;
      }
      blocks.push(codeBlock(code.join("\n"), fence[2], copyLabel));
      i += 1;
      continue;
    }
    if (line.trim() === "") {
      endPara();
      i += 1;
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      endPara();
      const h = el(`h${Math.min(heading[1].length + 2, 6)}`);
      h.append(inline(heading[2]));
      blocks.push(h);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      endPara();
      blocks.push(el("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      endPara();
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(lines[i++].match(QUOTE)[1]);
      const q = el("blockquote");
      q.append(...renderBlocks(quoted, copyLabel));
      blocks.push(q);
      continue;
    }
    if (ITEM.test(line) && (para.length === 0 || /^\s*([-*+]|1[.)])\s/.test(line))) {
      endPara();
      const [node, next] = list(lines, i, copyLabel);
      blocks.push(node);
      i = next;
      continue;
    }
    para.push(line);
    i += 1;
  }
  endPara();
  return blocks;
}

function inlineLines(lines) {
  // The first paragraph of a tight list item: no <p> wrapper, so items stay compact.
  const span = el("span");
  lines.forEach((line, i) => {
    if (i) span.append(el("br"));
    span.append(inline(line));
  });
  return span;
}

// Render `text` into a DocumentFragment.
export function renderMarkdown(text, copyLabel = "Copy") {
  const frag = document.createDocumentFragment();
  frag.append(...renderBlocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n"), copyLabel));
  return frag;
}
