// Chorus run viewer: wires the header controls, follows one run's event log and redraws
// the dashboard from it. State for tests and debugging lives in window.chorusView.
import "./style.css";
import { defaultModel, getKey, HttpError, listModels, listPeers, listRuns, setKey, startRun } from "./api.js";
import { AgentCards } from "./cards.js";
import { RoundCharts } from "./charts.js";
import { ConsensusGraph } from "./graph.js";
import { NetworkView } from "./network.js";
import { ProfilesView } from "./profiles.js";
import {
  noteClock,
  renderAnswer,
  renderCosts,
  renderEarlyStop,
  renderQuorumLost,
  renderJudge,
  renderMapReadout,
  renderPrompt,
  renderRoundTable,
  renderRouteNote,
  renderSettlement,
  renderStopReason,
  renderSummary,
  renderTimeline,
} from "./panels.js";
import { followRun, NotFound } from "./sse.js";
import { apply, emptyRun, isConsensus, latestVoices } from "./state.js";
import { $, ago, excerpt, fmtUsd, h, put, resetSeatColors, uuid } from "./util.js";

// ---------- elements ----------
const el = {
  status: $("[data-testid=status]"),
  message: $("[data-testid=message]"),
  keyForm: $("#key-form"),
  keyInput: $("[data-testid=key-input]"),
  runPicker: $("[data-testid=run-picker]"),
  refreshRuns: $("#refresh-runs"),
  tryForm: $("#try-form"),
  prompt: $("[data-testid=prompt-input]"),
  model: $("[data-testid=model-select]"),
  runButton: $("[data-testid=run-button]"),
  bounty: $("[data-testid=bounty-input]"),
  runError: $("#run-error"),
  summary: $("#summary"),
  promptLine: $("#prompt-line"),
  routeNote: $("#route-note"),
  graph: $("[data-testid=graph]"),
  graphEmpty: $("#graph-empty"),
  roundFilter: $("#round-filter"),
  fit: $("#fit-graph"),
  mapReadout: $("#map-readout"),
  mapScale: $("#map-scale"),
  earlyStop: $("#early-stop"),
  quorumLost: $("#quorum-lost"),
  answerNote: $("#answer-note"),
  answerBadge: $("#answer-badge"),
  roundTable: $("#round-table"),
  stopReason: $("[data-testid=stop-reason]"),
  cards: $("#cards"),
  agentsSub: $("#agents-sub"),
  judge: $("[data-testid=judge]"),
  answer: $("[data-testid=answer]"),
  answerMeta: $("#answer-meta"),
  copy: $("#copy-answer"),
  timeline: $("[data-testid=timeline]"),
  costs: $("[data-testid=costs]"),
  payouts: $("[data-testid=payouts]"),
  hero: $("#hero"),
};

// ---------- views ----------
let graph = null;
try {
  graph = new ConsensusGraph(el.graph, { onSelect: (seat, round) => cards.focus(seat, round, run), scaleEl: el.mapScale });
} catch (err) {
  el.graph.classList.add("no-webgl");
  put(el.graphEmpty, `The 3D graph needs WebGL: ${err.message}.`);
}
const charts = new RoundCharts($("#chart-agreement"), $("#chart-activity"));
const cards = new AgentCards(el.cards);
const network = new NetworkView($("#network"), $("#network-sub"));
let peersListing = null; // the last GET /chorus/v1/peers
const profiles = new ProfilesView($("#profiles"), $("#profiles-sub"), $("#new-profile"), {
  onChange: () => loadModels().catch(() => {}), // a new or deleted profile is a model to pick, or not
});

let run = emptyRun(null);
let follow = null; // AbortController of the stream being followed
let runsCache = [];

const view = {
  runId: null,
  status: "idle",
  events: [],
  rounds: [],
  get graphNodes() {
    return graph ? graph.counts().nodes : 0;
  },
  get graphLinks() {
    return graph ? graph.counts().links : 0;
  },
  get graphVotes() {
    return graph ? graph.counts().votes : { accept: 0, reject: 0 };
  },
  get graphSpread() {
    return graph ? graph.screenSpread() : null; // {px: the farthest two shown nodes apart on screen, width, height}
  },
  get chartPoints() {
    return charts.points();
  },
  answer: "",
  payouts: [],
  error: null,
  network: null, // {pools, live, away, load} as drawn
  peers: [],
  get profiles() {
    return profiles.state; // {status: ok | forbidden | error, profiles: [...], editing, message}
  },
};
window.chorusView = view;
Object.defineProperty(view, "_graph", { value: graph, enumerable: false }); // for debugging: the ForceGraph3D wrapper

// ---------- status and messages ----------
const STATUS_TEXT = { not_found: "not found" }; // the rest show as they are

function setStatus(s) {
  view.status = s;
  el.status.dataset.state = s;
  el.status.textContent = STATUS_TEXT[s] ?? s;
  document.body.dataset.status = s;
}

function showMessage(text, kind = "error") {
  el.message.textContent = text ?? "";
  el.message.dataset.kind = kind;
  el.message.hidden = !text;
}

function reportError(err, fallbackStatus = "error") {
  const msg = err?.message ?? String(err);
  view.error = msg;
  showMessage(msg, "error");
  if (err instanceof HttpError && err.unauthorized) setStatus("unauthorized");
  else if (fallbackStatus) setStatus(fallbackStatus);
}

// ---------- rendering (coalesced) ----------
const ALL = ["summary", "graph", "charts", "cards", "judge", "answer", "timeline", "costs", "settlement"];
const dirty = new Set();
let renderTimer = null;

function schedule(parts) {
  for (const p of parts) dirty.add(p);
  if (!renderTimer) renderTimer = setTimeout(render, 30);
}

function render() {
  renderTimer = null;
  const parts = new Set(dirty);
  dirty.clear();
  renderParts(parts);
}

/** Draw now what window.chorusView reports (graph, charts), so its fields agree at all times. */
function renderNow(parts) {
  const now = new Set(parts.filter((p) => p === "graph" || p === "charts"));
  if (!now.size) return;
  for (const p of now) dirty.delete(p);
  renderParts(now);
}

function renderParts(parts) {
  const has = run.id != null;
  el.hero.hidden = has;
  document.body.classList.toggle("has-run", has);
  document.body.classList.toggle("is-consensus", isConsensus(run));
  if (parts.has("summary")) {
    renderSummary(el.summary, run);
    renderPrompt(el.promptLine, run);
    renderRouteNote(el.routeNote, run);
    renderStopReason(el.stopReason, run);
    renderRunError();
  }
  if (parts.has("graph")) {
    if (graph) {
      if (run.points.length) graph.update(run);
      else graph.clear();
      renderRoundFilter();
    }
    renderMapReadout(el.mapReadout, run, graph?.show ?? "all");
    el.graphEmpty.hidden = !!(graph && run.points.length);
    if (graph && !run.points.length) {
      el.graphEmpty.textContent = run.route?.decision === "single" ? "No deliberation: this run was forwarded to a single model." : run.id ? "Answers appear here as each round ends." : "Pick a run or try a prompt.";
    }
  }
  if (parts.has("charts")) {
    charts.update(run);
    renderRoundTable(el.roundTable, run);
    renderStopReason(el.stopReason, run);
  }
  if (parts.has("cards")) {
    cards.update(run);
    renderEarlyStop(el.earlyStop, run);
    renderQuorumLost(el.quorumLost, run);
    const v = latestVoices(run);
    el.agentsSub.textContent = run.seats.size ? `${run.seats.size} seats${v.round != null ? ` · latest round ${v.round}` : ""}` : "";
  }
  if (parts.has("judge")) renderJudge(el.judge, run);
  if (parts.has("answer")) renderAnswer(el.answer, el.answerMeta, run, { note: el.answerNote, badge: el.answerBadge });
  if (parts.has("timeline")) renderTimeline(el.timeline, run);
  if (parts.has("costs")) renderCosts(el.costs, run);
  if (parts.has("settlement")) renderSettlement(el.payouts, run);
  if (parts.has("network") && peersListing) {
    const seated = new Set([...run.seats.values()].map((s) => s.peer).filter(Boolean));
    view.network = network.render(peersListing, seated);
    view.peers = peersListing.peers ?? [];
  }
}

function renderRunError() {
  const f = run.failed;
  el.runError.hidden = !f;
  if (!f) return;
  put(
    el.runError,
    h("div", { class: "run-error-title" }, `Run failed${f.status ? ` (HTTP ${f.status})` : ""}`, f.error?.type ? h("code", null, f.error.type) : null),
    h("div", { class: "run-error-msg" }, f.error?.message ?? "The run ended with an error."),
    h("div", { class: "muted small" }, "Everything received before the failure is kept below."),
  );
}

function renderRoundFilter() {
  const rounds = [...run.rounds].sort((a, b) => a - b);
  const current = graph.show;
  const chip = (label, value) =>
    h(
      "button",
      {
        class: `chip-btn${current === value ? " active" : ""}`,
        type: "button",
        onclick: () => {
          graph.setShow(value);
          renderRoundFilter();
          renderMapReadout(el.mapReadout, run, value);
        },
      },
      label,
    );
  put(el.roundFilter, rounds.length > 1 ? [chip("All rounds", "all"), rounds.map((r) => chip(`R${r}`, r))] : null);
}

// A live run's timeline grows with the clock.
setInterval(() => {
  if (view.status === "live" && run.info && !run.done && !run.failed) schedule(["timeline"]);
}, 1000);

// ---------- following a run ----------
function resetRun(id) {
  follow?.abort();
  follow = null;
  run = emptyRun(id);
  resetSeatColors();
  view.runId = id;
  view.events = [];
  view.rounds = run.rounds;
  view.answer = "";
  view.payouts = [];
  view.error = null;
  cards.clear();
  if (graph) graph.clear();
  schedule(ALL);
}

function onEnvelope(env) {
  view.events.push(env);
  noteClock(env.time);
  if (env.type === "run_started") {
    resetSeatColors((env.data?.seats ?? []).map((s) => s.seat));
    if (!runsCache.some((r) => r.id === run.id)) loadRuns().catch(() => {}); // a run this page just started
  }
  const parts = apply(run, env);
  view.answer = run.answer;
  renderNow(parts);
  if (env.type === "settled") view.payouts = env.data?.payouts ?? [];
  if (env.type === "run_done" && run.seats.size && [...run.seats.values()].some((s) => s.peer)) loadPeers().catch(() => {}); // earnings moved
  if (env.type === "run_failed") {
    const e = env.data?.error ?? {};
    view.error = e.message ?? `run failed (${env.data?.status ?? "?"})`;
    showMessage(`The run failed${env.data?.status ? ` (HTTP ${env.data.status})` : ""}: ${view.error}`, "error");
  }
  schedule(parts);
}

/**
 * Open a run's event stream. waitS: how long the proxy may wait for the run's first event
 * (30 s for a run this page just started, 2 s for an existing one).
 */
async function openRun(id, { waitS = 2, pushUrl = true, postError = null } = {}) {
  resetRun(id);
  showMessage("");
  setStatus("connecting");
  if (pushUrl) setUrlRun(id);
  syncPicker();
  const ctl = new AbortController();
  follow = ctl;
  const launch = { postError };
  ctl.launch = launch;
  try {
    const end = await followRun(id, {
      waitS,
      signal: ctl.signal,
      onEnvelope,
      onPhase: (phase) => {
        if (follow === ctl) setStatus(phase === "live" ? "live" : "connecting");
      },
    });
    if (follow !== ctl) return;
    render(); // everything drawn before the status says the run is over
    setStatus(end === "run_failed" ? "failed" : "done");
  } catch (err) {
    if (follow !== ctl || err?.name === "AbortError") return;
    if (err instanceof NotFound) {
      if (launch.postError) {
        reportError(launch.postError);
      } else {
        view.error = err.message;
        showMessage(err.message, "error");
        setStatus("not_found");
      }
    } else {
      reportError(err);
    }
  }
  schedule(["summary", "timeline", "answer"]);
  loadRuns().catch(() => {});
}

function setUrlRun(id) {
  const url = new URL(location.href);
  if (url.searchParams.get("run") === id) return;
  url.searchParams.set("run", id);
  history.pushState({ run: id }, "", url);
}

window.addEventListener("popstate", () => {
  const id = new URL(location.href).searchParams.get("run");
  if (id && id !== view.runId) openRun(id, { pushUrl: false });
});

// ---------- try a prompt ----------
async function tryPrompt(ev) {
  ev.preventDefault();
  const prompt = el.prompt.value.trim();
  const model = el.model.value;
  if (!getKey()) return showMessage("Enter your proxy key first (the key box, top right).", "error");
  if (!prompt) return showMessage("Write a prompt to send to the panel.", "error");
  if (!model) return showMessage("Pick a model first (this proxy lists no chorus models for your key).", "error");
  const dollars = el.bounty.value.trim();
  const cents = dollars === "" ? null : Math.round(Number(dollars) * 100);
  if (cents !== null && !(Number.isFinite(cents) && cents >= 0)) return showMessage("The bounty must be an amount in USD, or empty for none.", "error");
  const id = uuid();
  el.runButton.disabled = true;
  const opened = openRun(id, { waitS: 30, pushUrl: false });
  const ctl = follow;
  try {
    await startRun({ model, prompt, debateId: id, bounty: cents, signal: ctl.signal });
    if (follow === ctl) setUrlRun(id);
  } catch (err) {
    if (err?.name === "AbortError" || follow !== ctl) return;
    if (err instanceof HttpError && err.status >= 500) {
      setUrlRun(id);
      // The run may have started and failed: its event log says more. Keep following.
      ctl.launch.postError = err;
      showMessage(err.message, "error");
      view.error = err.message;
    } else {
      ctl.abort();
      follow = null;
      reportError(err);
    }
  } finally {
    el.runButton.disabled = false;
  }
  await opened;
}

// ---------- lists ----------
async function loadModels() {
  const models = await listModels();
  const prev = el.model.value;
  put(
    el.model,
    models.length
      ? models.map((m) => h("option", { value: m.id, title: m.protocol ? `protocol: ${m.protocol}` : null }, m.id))
      : h("option", { value: "", disabled: true }, "no chorus models"),
  );
  el.model.value = models.some((m) => m.id === prev) ? prev : defaultModel(models);
}

async function loadRuns() {
  if (!getKey()) return;
  const runs = await listRuns(20);
  runsCache = runs.slice().sort((a, b) => (b.state === "running") - (a.state === "running"));
  syncPicker();
}

function syncPicker() {
  const current = view.runId;
  const opts = [h("option", { value: "" }, runsCache.length ? "Recent runs…" : "No recent runs")];
  let seen = false;
  for (const r of runsCache) {
    if (r.id === current) seen = true;
    const icon = r.state === "running" ? "● live" : r.state === "failed" ? "✕ failed" : "✓ done";
    const label = [icon, r.model || r.profile || "", r.protocol, fmtUsd(r.cost), ago(r.started), `“${excerpt(r.prompt, 48)}”`].filter(Boolean).join(" · ");
    opts.push(h("option", { value: r.id, title: r.prompt ?? "" }, label));
  }
  if (current && !seen) opts.push(h("option", { value: current }, `${current.slice(0, 8)}… (this run)`));
  put(el.runPicker, opts);
  el.runPicker.value = current ?? "";
}

async function loadPeers() {
  peersListing = await listPeers();
  schedule(["network"]);
}

async function loadLists() {
  loadPeers().catch(() => {}); // the network view is extra: a proxy without peers still works
  profiles.load(); // so is the profiles panel: for admin keys only
  const results = await Promise.allSettled([loadModels(), loadRuns()]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) reportError(failed.reason, view.runId ? null : "error");
  return !failed;
}

// The network view follows the pool (joins, heartbeats, load) every few seconds.
setInterval(() => {
  if (document.visibilityState === "visible" && getKey() && view.status !== "unauthorized") loadPeers().catch(() => {});
}, 3000);

// Keep the run picker fresh while the page is open.
setInterval(() => {
  if (document.visibilityState === "visible" && getKey() && view.status !== "unauthorized") loadRuns().catch(() => {});
}, 15000);

// ---------- wiring ----------
el.keyInput.value = getKey();
el.keyForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = el.keyInput.value.trim();
  setKey(key);
  if (!key) {
    showMessage("Key cleared.", "info");
    return;
  }
  showMessage("");
  if (view.status === "unauthorized") setStatus("idle");
  const ok = await loadLists();
  if (!ok) return;
  showMessage("Key saved for this browser tab.", "info");
  const pending = new URL(location.href).searchParams.get("run");
  if (pending && (pending !== view.runId || ["unauthorized", "idle", "error"].includes(view.status))) openRun(pending, { pushUrl: false });
});
el.runPicker.addEventListener("change", () => {
  const id = el.runPicker.value;
  if (id && id !== view.runId) openRun(id, { waitS: 2 });
});
el.refreshRuns.addEventListener("click", () => loadRuns().catch((e) => reportError(e, null)));
el.tryForm.addEventListener("submit", tryPrompt);
el.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.metaKey || ev.ctrlKey)) el.tryForm.requestSubmit();
});
el.fit?.addEventListener("click", () => graph?.fit());
el.copy?.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(run.answer);
    el.copy.textContent = "Copied";
  } catch {
    el.copy.textContent = "Copy failed";
  }
  setTimeout(() => (el.copy.textContent = "Copy"), 1500);
});

// A refusal from a call made inside a view (the receipt) still reaches the message line.
window.addEventListener("chorus:error", (ev) => reportError(ev.detail, null));

setStatus("idle");
schedule(ALL);
(async () => {
  const id = new URL(location.href).searchParams.get("run");
  if (!getKey()) {
    showMessage(id ? `Enter your proxy key to open run ${id}.` : "Enter your proxy key (top right) to list runs and models.", "info");
    return;
  }
  const ok = await loadLists();
  if (id && (ok || view.status !== "unauthorized")) openRun(id, { pushUrl: false });
})();
