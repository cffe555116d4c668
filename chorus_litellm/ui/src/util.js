// Small DOM and formatting helpers. Every piece of run data reaches the DOM through
// textContent (h() below) or esc(): answers are model output, never trusted HTML.

/** h("div", {class: "x", dataset: {seat: "a"}, onclick}, child, [children], "text") */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "style" && typeof v === "object") {
        for (const [p, val] of Object.entries(v)) p.startsWith("--") ? el.style.setProperty(p, val) : (el.style[p] = val);
      }
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replace an element's children. */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function fmtUsd(x) {
  if (x == null || Number.isNaN(+x)) return "—";
  const v = +x;
  if (v === 0) return "$0";
  if (Math.abs(v) < 0.01) return `$${v.toFixed(5)}`;
  if (Math.abs(v) < 1) return `$${v.toFixed(4)}`;
  return `$${v.toFixed(2)}`;
}

export function fmtInt(x) {
  return x == null ? "—" : Math.round(+x).toLocaleString("en-US");
}

export function fmtSecs(s) {
  if (s == null || Number.isNaN(+s)) return "—";
  const v = +s;
  if (v < 1) return `${Math.round(v * 1000)} ms`;
  if (v < 60) return `${v.toFixed(v < 10 ? 2 : 1)} s`;
  return `${Math.floor(v / 60)} m ${Math.round(v % 60)} s`;
}

export function fmtPct(x) {
  return x == null ? "—" : `${Math.round(+x * 100)}%`;
}

export function fmtNum(x, d = 2) {
  return x == null ? "—" : (+x).toFixed(d);
}

export function ago(epochS) {
  if (!epochS) return "";
  const d = Date.now() / 1000 - epochS;
  if (d < 60) return "just now";
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return new Date(epochS * 1000).toLocaleDateString();
}

export function excerpt(s, n = 60) {
  const t = String(s ?? "").replace(/\s+/g, " ").trim();
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

/** Money in minor units (cents) -> "USD 12.34", using the currency's own number of decimals. */
export function fmtMinor(amount, currency) {
  if (amount == null) return "—";
  let digits = 2;
  let formatter = null;
  try {
    formatter = new Intl.NumberFormat("en-US", { style: "currency", currency: currency || "USD" });
    digits = formatter.resolvedOptions().maximumFractionDigits;
  } catch {
    formatter = null;
  }
  const major = +amount / 10 ** digits;
  return formatter ? formatter.format(major) : `${major.toFixed(digits)} ${currency ?? ""}`.trim();
}

// Cluster colours (per round) and seat identity colours (cards, trails, chips).
const CLUSTER = ["#4cc9f0", "#80ed99", "#b794f6", "#ff9f43", "#2ec4b6", "#f78fb3", "#c0eb75", "#74c0fc", "#e599f7", "#ffd43b"];
export const clusterColor = (i) => (i == null || i < 0 ? "#5c6370" : CLUSTER[i % CLUSTER.length]);

const SEAT = ["#60a5fa", "#f472b6", "#34d399", "#fbbf24", "#a78bfa", "#fb7185", "#22d3ee", "#a3e635", "#f97316", "#e879f9", "#94a3b8", "#2dd4bf"];
const seatIndex = new Map();
export function seatColor(seat) {
  if (!seatIndex.has(seat)) seatIndex.set(seat, seatIndex.size);
  return SEAT[seatIndex.get(seat) % SEAT.length];
}
/** Seats get colours in their configured order (run_started), so colours are stable per run. */
export function resetSeatColors(seats = []) {
  seatIndex.clear();
  seats.forEach((s) => seatColor(s));
}

export const VOICE = { consensus: "#ffd166", dissent: "#ff4d6d" };
export const ECHO = "#6b7280";

/** RFC 4122 v4 uuid (crypto.randomUUID needs a secure context; localhost is, plain http isn't). */
export function uuid() {
  if (globalThis.crypto?.randomUUID) {
    try {
      return crypto.randomUUID();
    } catch {
      /* insecure context: fall through */
    }
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
