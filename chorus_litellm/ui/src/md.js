// A small, line-based Markdown view for model answers: headings, bullet and numbered
// lines, fenced code, quotes, **bold**, *italic* and `code`.
// - Safe: DOM nodes with textContent only, never innerHTML, so model output can't inject markup.
// - Lossless: every character of the answer stays in the DOM, in order. Markers such as
//   "**" or "- " sit in zero-size spans, lines are inline and joined by "\n" in a
//   white-space: pre-wrap box, so both textContent and innerText are exactly the raw text
//   (copy-paste and text search see what the model wrote).
// - Stream-friendly: any prefix of an answer renders (an unclosed ``` is code so far).
import { h } from "./util.js";

const mark = (s) => h("span", { class: "md-mark" }, s);

export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").split("\n");
  let inCode = false;
  lines.forEach((line, i) => {
    if (i > 0) out.append("\n");
    if (/^\s*```/.test(line)) {
      inCode = !inCode;
      out.append(h("span", { class: "md-fence" }, mark(line)));
      return;
    }
    const node = inCode ? h("span", { class: "md-code" }, line) : lineNode(line);
    if (Array.isArray(node)) out.append(...node);
    else out.append(node);
  });
  return out;
}

function lineNode(line) {
  let m = line.match(/^(#{1,6}\s+)(.*)$/);
  if (m) return h("span", { class: `md-h md-h${m[1].trim().length}` }, mark(m[1]), inline(m[2]));
  m = line.match(/^(\s*)([-*+]\s+)(.*)$/);
  if (m) return h("span", { class: "md-li" }, m[1], h("span", { class: "md-bullet" }, mark(m[2])), inline(m[3]));
  m = line.match(/^(\s*)(\d+[.)]\s+)(.*)$/);
  if (m) return h("span", { class: "md-li" }, m[1], h("span", { class: "md-n" }, m[2]), inline(m[3]));
  m = line.match(/^(\s*>\s?)(.*)$/);
  if (m) return h("span", { class: "md-quote" }, mark(m[1]), inline(m[2]));
  return inline(line);
}

const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+?\*\*)|(\*[^*\s][^*\n]*?\*)/g;

function inline(text) {
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    const tok = m[0];
    const n = m[2] ? 2 : 1;
    const tag = m[1] ? "code" : m[2] ? "strong" : "em";
    parts.push(h(tag, null, mark(tok.slice(0, n)), tok.slice(n, -n), mark(tok.slice(-n))));
    last = m.index + tok.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}
