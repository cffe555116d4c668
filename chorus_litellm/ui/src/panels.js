// The run's other views: summary strip, round table, judge, final answer, stage timeline,
// costs and settlement. Each takes the run and redraws its own element.
import { getReceipt } from "./api.js";
import { renderMarkdown } from "./md.js";
import { isConsensus, isVoteRound, seatCosts, voteRounds } from "./state.js";
import { fmtInt, fmtMinor, fmtNum, fmtPct, fmtSecs, fmtUsd, h, put, seatColor } from "./util.js";

// ---------- summary strip ----------

export function renderSummary(el, run) {
  el.hidden = run.id == null; // before any run the hero says what to do; no empty strip
  if (run.id == null) {
    put(el);
    return;
  }
  const i = run.info ?? {};
  const done = run.done;
  const cost = done?.cost ?? [...seatCosts(run).values()].reduce((s, v) => s + (v.cost ?? 0), 0);
  const tokens = done?.usage?.total_tokens ?? [...seatCosts(run).values()].reduce((s, v) => s + (v.total_tokens ?? 0), 0);
  const items = [
    ["run", run.id],
    // a profile stored at run time names the version that ran (a config file's is version 0)
    ["model", i.model ? `${i.model}${i.profile_version ? ` · v${i.profile_version}` : ""}` : "—"],
    ["protocol", i.protocol ?? "—"],
    ["seats", run.seats.size ? `${run.seats.size}${i.quorum != null ? ` (quorum ${i.quorum})` : ""}` : "—"],
    ["rounds", `${run.rounds.length}${maxRounds(run) != null ? ` / ${maxRounds(run)}` : ""}`],
    ["route", run.route ? `${run.route.decision}${run.route.policy ? ` · ${run.route.policy}` : ""}` : "—"],
    ["bounty", i.bounty ? fmtMinor(i.bounty.amount, i.bounty.currency) : "none"],
    ["cost", fmtUsd(cost)],
    ["tokens", fmtInt(tokens)],
  ];
  put(
    el,
    items.map(([k, v]) => h("div", { class: "kv" }, h("span", { class: "k" }, k), h("span", { class: "v", title: String(v) }, String(v)))),
  );
}

/** The most rounds the run can have: a consensus run's max_rounds counts its votes only. */
function maxRounds(run) {
  const m = run.info?.max_rounds;
  if (m == null) return null;
  return run.info?.protocol === "consensus" ? m + 2 : m;
}

export function renderPrompt(el, run) {
  const p = run.info?.prompt;
  el.hidden = !p;
  if (p) put(el, h("span", { class: "k" }, "prompt"), h("span", { class: "prompt-text" }, p));
}

export function renderRouteNote(el, run) {
  const single = run.route?.decision === "single";
  el.hidden = !single;
  if (single) {
    put(
      el,
      h("b", null, "Forwarded to a single model. "),
      `The gate (${run.route.policy ?? "policy"}) decided this prompt needs no panel`,
      run.route.reason ? `: ${run.route.reason}` : "",
      run.route.score != null ? ` (score ${fmtNum(run.route.score)})` : "",
      ". There are no rounds to show.",
    );
  }
}

// ---------- round table + stop reason ----------

export function renderRoundTable(el, run) {
  const rounds = [...run.rounds].sort((a, b) => a - b);
  if (!rounds.length) {
    put(el, h("p", { class: "muted small" }, "Rounds appear here as they finish."));
    return;
  }
  put(
    el,
    h(
      "table",
      { class: "tbl compact" },
      h("thead", null, h("tr", null, ["Round", "Stage", "Text agr.", "Answer agr.", "Shift", "Clusters", "Flips", "Filtered", "Consensus", "Dissent", "Vote"].map((x) => h("th", null, x)))),
      h(
        "tbody",
        null,
        rounds.map((r) => {
          const d = run.roundDone.get(r) ?? {};
          const vote = isVoteRound(run, r);
          const stage = run.roundStarts.get(r)?.stage ?? "—";
          return h(
            "tr",
            null,
            h("td", null, `R${r}`),
            h("td", null, vote && d.candidate ? `vote · v${d.candidate}` : run.earlyStop?.round === r && run.earlyStop.saved ? `${stage} · early stop` : stage),
            h("td", null, vote ? "—" : fmtPct(d.agreement)),
            h("td", { title: d.answer_agreement == null ? "no extractable answers (open-ended)" : "share of the leading extracted answer" }, vote ? "—" : fmtPct(d.answer_agreement)),
            h("td", null, fmtNum(d.shift, 3)),
            h("td", null, vote || stage === "critique" ? "—" : String(d.clusters?.length ?? 0)),
            h("td", null, String(d.flips?.length ?? 0)),
            h("td", { title: Object.entries(d.filtered ?? {}).map(([s, why]) => `${s}: ${why}`).join("\n") }, String(Object.keys(d.filtered ?? {}).length)),
            h("td", null, seatChip(d.consensus)),
            h("td", null, seatChip(d.dissent)),
            h("td", null, vote ? tally(d) : d.vote ? `${d.vote.answer} (${fmtPct(d.vote.share)})` : "—"),
          );
        }),
      ),
    ),
  );
}

export function renderStopReason(el, run) {
  let text;
  let cls = "";
  if (run.done) {
    text = run.done.stop_reason ? humanize(run.done.stop_reason) : run.rounds.length ? "finished" : "no rounds";
    if (run.replaced) text += ` · vote guard: ${run.replaced.seat}'s draft stands`;
    else if (run.done.fallback) text += " · synthesis fell back to a panel answer";
    cls = "ok";
  } else if (run.failed) {
    text = "run failed";
    cls = "bad";
  } else if (run.info) {
    text = run.rounds.length ? `deliberating (after round ${run.rounds[run.rounds.length - 1]})` : "deliberating…";
  } else {
    text = "—";
  }
  el.className = `stop-reason ${cls}`;
  el.textContent = text;
}

function tally(d) {
  const ballots = Object.values(d.votes ?? {}).filter((b) => b.accept != null);
  if (!ballots.length) return d.vote ? `accept ${fmtPct(d.vote.share)}` : "—";
  return `${ballots.filter((b) => b.accept).length} of ${ballots.length} accept`;
}

// ---------- the map's agreement readout ----------

/** Agreement as a figure that still tells 99.97% from 100% (fmtPct rounds to whole percents). */
export function fmtAgreement(x) {
  if (x == null) return "—";
  const pct = 100 * +x;
  return `${pct >= 99 && pct < 100 ? pct.toFixed(2) : Math.round(pct)}%`;
}

/** Beside the map: how much the shown round (or the latest) agrees, in figures. */
export function renderMapReadout(el, run, show) {
  const rounds = [...run.rounds].sort((a, b) => a - b);
  const r = show === "all" || show == null ? rounds[rounds.length - 1] : show;
  const d = r != null ? run.roundDone.get(r) : null;
  el.hidden = !d || !run.points.length;
  if (el.hidden) return;
  const parts = isVoteRound(run, r)
    ? [["accepted", d.vote?.share != null ? fmtPct(d.vote.share) : fmtPct(d.agreement)]]
    : [["text agreement", fmtAgreement(d.agreement)], ...(d.answer_agreement != null ? [["answer agreement", fmtAgreement(d.answer_agreement)]] : [])];
  put(
    el,
    h("span", { class: "k" }, `R${r}`),
    parts.map(([k, v]) => h("span", { class: "map-fig" }, h("b", null, v), ` ${k}`)),
  );
}

// ---------- early stop ----------

/** Round 1 asked in waves and stopped early: who was asked, who was not, what it saved. */
export function renderEarlyStop(el, run) {
  const e = run.earlyStop;
  el.hidden = !e || !e.saved;
  if (!e || !e.saved) return;
  const total = e.asked + e.saved;
  put(
    el,
    h("b", null, "Early stop. "),
    `Round ${e.round} asked ${e.asked} of ${total} seats first; their answers already settled the vote, so `,
    (e.saved_seats ?? []).map((s, i) => [i ? ", " : "", seatChip(s)]),
    ` ${e.saved === 1 ? "was" : "were"} never asked`,
    e.cost_saved_usd != null ? h("span", null, ", saving about ", h("b", { "data-testid": "early-stop-saved" }, fmtUsd(e.cost_saved_usd)), ".") : ".",
  );
}

// ---------- quorum lost ----------

// PanelFailure.kind, as a reader says it
const FAILED_AS = { timeout: "timed out", http_error: "HTTP error", content_filter: "content filter", empty: "empty answer",
  connection: "connection failed", cancelled: "cancelled", error: "error" };

/** Round 1 missed its quorum and panel.on_quorum_failure answered instead: who failed and how, who answers. */
export function renderQuorumLost(el, run) {
  const q = run.quorumLost;
  el.hidden = !q;
  if (!q) return;
  const instead = q.fallback === "single_model"
    ? ["the single model ", q.answered_by ? seatChip(q.answered_by) : null, " answers instead (no judge, no synthesis)"]
    : ["the best answer that came back, ", q.answered_by ? seatChip(q.answered_by) : null, "'s, stands (no judge, no synthesis)"];
  put(
    el,
    h("b", null, "Quorum lost. "),
    `Round 1: ${q.answered} answered, ${q.required} required. `,
    (q.failed ?? []).map((f, i) => [i ? "; " : "", seatChip(f.seat), ` ${FAILED_AS[f.kind] ?? f.kind}${f.status ? ` ${f.status}` : ""}`]),
    (q.failed ?? []).length ? ". " : "",
    "The run is degraded: ", instead, ".",
  );
}

// ---------- judge ----------

export function renderJudge(el, run) {
  const j = run.judge;
  const title = el.closest("section")?.querySelector(".panel-head h2");
  const consensus = !j && isConsensus(run);
  if (title) title.textContent = consensus ? "The panel's vote" : "Judge's analysis";
  if (consensus) {
    renderVotes(el, run);
    return;
  }
  if (!j) {
    put(el, h("p", { class: "muted" }, run.done || run.failed ? "No judge analysis in this run." : "The judge reads the panel after the last round."));
    return;
  }
  const list = (title, cls, items) =>
    items?.length
      ? h(
          "section",
          { class: `judge-list ${cls}` },
          h("h4", null, title, h("span", { class: "count" }, String(items.length))),
          h(
            "ul",
            null,
            items.map((c) => h("li", null, h("span", { class: "claim" }, c.claim ?? String(c)), h("span", { class: "chips" }, (c.support ?? []).map(seatChip)))),
          ),
        )
      : null;
  put(
    el,
    j.degraded &&
      h("div", { class: "notice warn" }, h("b", null, "Degraded analysis. "), "The judge's answer could not be used as is", j.error ? `: ${j.error}` : "", "; the synthesis worked from the raw answers."),
    h(
      "div",
      { class: "judge-meta" },
      j.best && h("span", null, "best answer: ", seatChip(j.best)),
      j.duration_s != null && h("span", { class: "muted" }, `judged in ${fmtSecs(j.duration_s)}`),
    ),
    list("Consensus", "consensus", j.consensus),
    list("Contradictions", "contradictions", j.contradictions),
    list("Insights", "insights", j.insights),
    j.blind_spots?.length
      ? h("section", { class: "judge-list blind" }, h("h4", null, "Blind spots", h("span", { class: "count" }, String(j.blind_spots.length))), h("ul", null, j.blind_spots.map((b) => h("li", null, String(b)))))
      : null,
  );
}

/** A consensus run has no judge: what happened instead (candidates, each vote, the outcome). */
function renderVotes(el, run) {
  const votes = voteRounds(run);
  const stop = run.done?.stop_reason ?? null;
  const versions = [...run.candidates.keys()].sort((a, b) => a - b);
  const last = versions.length ? versions[versions.length - 1] : null;
  const counted = (v) => Object.values(v.votes ?? {}).filter((b) => b.accept != null);
  let outcome = null;
  if (stop === "consensus") {
    const v = votes[votes.length - 1];
    const c = v ? counted(v) : [];
    outcome = h("div", { class: "notice ok" }, h("b", null, "Consensus. "), `Candidate v${v?.candidate ?? last ?? "?"} accepted in vote ${v?.vote ?? "?"}`, c.length ? ` (${c.filter((b) => b.accept).length} of ${c.length} accept)` : "", ": it is the answer.");
  } else if (stop === "drafts_agree") {
    outcome = h("div", { class: "notice ok" }, h("b", null, "The drafts agreed. "), "Their extracted answers matched, so nothing was critiqued or voted on: the answer is a draft of the majority.");
  } else if (run.done) {
    outcome = h("div", { class: "notice warn" }, h("b", null, "No consensus. "), `After ${votes.length} vote${votes.length === 1 ? "" : "s"} (${humanize(stop ?? "stopped")})`, last ? `: the last candidate, v${last}, is the answer.` : ": the first draft is the answer.");
  } else if (run.failed) {
    outcome = h("div", { class: "notice bad" }, "The run failed before the panel agreed.");
  }
  put(
    el,
    h("p", { class: "muted small", "data-testid": "no-judge" }, "No judge in a consensus run: the panel drafts, critiques the drafts, and votes on the synthesizer's candidate until it accepts one."),
    outcome,
    versions.length
      ? h(
          "section",
          { class: "judge-list candidates" },
          h("h4", null, "Candidates", h("span", { class: "count" }, String(versions.length))),
          h(
            "ul",
            null,
            versions.map((n) => {
              const c = run.candidates.get(n);
              const d = c.done;
              const state = !d ? "writing…" : d.status !== "ok" ? `failed${d.kind ? ` (${d.kind})` : ""}` : `${fmtSecs(d.latency_s)} · ${fmtInt((d.tokens?.completion ?? 0))} tokens`;
              return h("li", null, h("span", { class: "claim" }, h("b", null, `v${n}`), ` ${c.stage === "revise" ? "revision" : "candidate"} by ${c.model ?? "the synthesizer"}`), h("span", { class: "muted" }, state));
            }),
          ),
        )
      : null,
    votes.map((v) => {
      const c = counted(v);
      const ok = c.filter((b) => b.accept).length;
      return h(
        "section",
        { class: "judge-list vote-round", "data-testid": "vote-round" },
        h("h4", null, `Vote ${v.vote} · R${v.round}${v.candidate ? ` · candidate v${v.candidate}` : ""}`, h("span", { class: "count" }, v.done ? `${ok} of ${c.length} accept` : "voting…")),
        v.votes
          ? h(
              "ul",
              null,
              Object.entries(v.votes).map(([seat, b]) =>
                h(
                  "li",
                  { class: `ballot ${b.accept === true ? "accepts" : b.accept === false ? "rejects" : "unreadable"}` },
                  h("span", { class: "claim" }, seatChip(seat), " ", h("b", { class: "verdict" }, b.accept === true ? "✓ accept" : b.accept === false ? "✕ reject" : "? unreadable"), b.confidence != null ? h("span", { class: "muted" }, ` · confidence ${fmtPct(b.confidence)}`) : null, b.cast === false ? h("span", { class: "muted" }, " · standing vote") : null),
                  b.objection || b.blocking?.length ? h("span", { class: "objection" }, [b.objection, ...(b.blocking ?? [])].filter(Boolean).join(" · ")) : null,
                ),
              ),
            )
          : null,
      );
    }),
    !votes.length && !outcome ? h("p", { class: "muted" }, "The votes appear here as the panel casts them.") : null,
  );
}

// ---------- final answer ----------

export function renderAnswer(el, metaEl, run, { note = null, badge = null } = {}) {
  const streaming = !!run.synthesis && !run.done && !run.failed;
  if (el.dataset.rendered !== run.answer) {
    put(el, renderMarkdown(run.answer));
    el.dataset.rendered = run.answer.length ? run.answer : "";
  }
  el.classList.toggle("streaming", streaming);
  el.classList.toggle("empty", !run.answer);
  const consensus = isConsensus(run);
  if (!run.answer) el.dataset.placeholder = run.failed ? "No final answer: the run failed." : run.synthesis ? "Writing…" : consensus ? "The candidate the panel accepts (or the last one) appears here." : "The synthesized answer streams here.";
  const r = run.replaced;
  if (badge) badge.hidden = !r;
  if (note) {
    note.hidden = !r;
    if (r) {
      put(
        note,
        h("b", null, "Not the synthesis: the vote guard replaced it. "),
        "The answer below is ",
        seatChip(r.seat),
        "'s draft, because ",
        r.reason ?? "the synthesis did not state the panel's answer",
        ".",
      );
    }
  }
  const bits = [];
  if (run.synthesis?.model) bits.push(r ? `written by ${run.synthesis.model}, replaced by ${r.seat}'s draft` : `synthesized by ${run.synthesis.model}`);
  if (consensus && run.done && run.candidates.size) {
    const last = Math.max(...run.candidates.keys());
    bits.push(run.done.stop_reason === "consensus" ? `candidate v${last}, accepted by the panel` : `candidate v${last}, not accepted`);
  }
  if (run.done?.fallback && !r) bits.push("fallback to the best panel answer");
  if (run.answer) bits.push(`${run.answer.length.toLocaleString()} chars`);
  metaEl.textContent = bits.join(" · ");
}

// ---------- stage timeline ----------

export function timelineRows(run) {
  const t0 = run.times.run_started ?? run.firstTime;
  if (t0 == null) return { rows: [], total: 0 };
  const end = run.done?.time ?? run.failed?.time ?? null;
  const now = end ?? Math.max(run.lastTime ?? t0, liveNow(run));
  const timings = run.done?.timings ?? {};
  const rows = [];
  const add = (key, label, start, stop, dur, live = false, extra = {}) => {
    if (start == null) return;
    const d = dur ?? (stop != null ? stop - start : null);
    rows.push({ key, label, start: start - t0, dur: Math.max(0, d ?? 0), live, measured: dur != null, ...extra });
  };
  const roundStartTimes = [...run.roundStarts.values()].map((r) => r.time).filter((x) => x != null);
  const firstRound = roundStartTimes.length ? Math.min(...roundStartTimes) : null;
  const gateEnd = firstRound ?? run.times.route ?? run.synthesis?.time ?? end;
  add("gate", "Gate", t0, gateEnd, timings.gate, gateEnd == null);
  const middle = [];
  const steps = [...run.roundStarts.values(), ...run.candidates.values(), run.synthesis ?? {}].map((x) => x.time).filter((x) => x != null);
  for (const r of [...run.roundStarts.keys()].sort((a, b) => a - b)) {
    const s = run.roundStarts.get(r);
    const d = run.roundDone.get(r);
    let stop = d?.time ?? (end ?? now);
    const next = Math.min(...steps.filter((x) => x > s.time));
    if (d && next < d.time) {
      // Its map was measured beside the next step (round_done came later): it ended with its last answer.
      const answered = [...run.seats.values()].map((x) => x.answers.get(r)?.time).filter((x) => x != null);
      if (answered.length) stop = Math.max(...answered);
    }
    middle.push([`round-${r}`, `Round ${r}${s.stage ? ` · ${s.stage}` : ""}`, s.time, stop, null, !d && !end]);
  }
  // Consensus: the synthesizer's candidate and revisions, timed by their own calls.
  for (const c of [...run.candidates.values()].sort((a, b) => a.version - b.version)) {
    const d = c.done;
    const start = c.time ?? (d ? d.time - (d.latency_s ?? 0) : null);
    const label = `${c.stage === "revise" ? "Revision" : "Candidate"} v${c.version}${d && d.status !== "ok" ? " (failed)" : ""}`;
    middle.push([`candidate-${c.version}`, label, start, d?.time ?? (end ?? now), d ? (d.time - start) : null, !d && !end]);
  }
  if (run.earlyStop?.saved && run.earlyStop.time != null) {
    // A point in time, where round 1's first wave settled the vote (the rest never asked).
    const e = run.earlyStop;
    middle.push(["early-stop", `Early stop · R${e.round}`, e.time, e.time, 0, false, {
      note: `${e.saved} skipped`,
      title: `${e.asked} seats asked, ${e.saved} not asked (${(e.saved_seats ?? []).join(", ")}): about ${fmtUsd(e.cost_saved_usd)} saved`,
    }]);
  }
  if (run.quorumLost?.time != null) {
    // A point in time: round 1 missed its quorum and the fallback took over.
    const q = run.quorumLost;
    middle.push(["quorum-lost", "Quorum lost · R1", q.time, q.time, 0, false, {
      note: `${q.answered}/${q.required}`,
      title: `${q.answered} answered, ${q.required} required: ${q.fallback === "single_model" ? "the single model" : "the best answer"} answers instead`,
    }]);
  }
  middle.sort((a, b) => (a[2] ?? 0) - (b[2] ?? 0));
  for (const row of middle) add(...row);
  if (run.judge) {
    const start = run.judge.time - (run.judge.duration_s ?? 0);
    add("judge", "Judge", start, run.judge.time, timings.judge ?? run.judge.duration_s);
  }
  if (run.synthesis?.implicit && timings.synthesis == null) {
    // No synthesis call: the protocol wrote the answer (a consensus candidate, a cost cap).
    add("answer", "Answer sent", run.synthesis.time, run.synthesis.time, 0);
  } else if (run.synthesis) {
    const stop = run.synthesis.doneTime ?? (end == null ? now : run.done?.time ?? run.synthesis.lastTime);
    add("synthesis", "Synthesis", run.synthesis.time, stop, timings.synthesis, !end && run.synthesis.doneTime == null);
  }
  if (run.replaced?.time != null) {
    add("replaced", "Vote guard", run.replaced.time, run.replaced.time, 0, false, { title: `the synthesis was replaced by ${run.replaced.seat}'s draft: ${run.replaced.reason ?? ""}` });
  }
  if (run.settled) add("settle", "Settlement", run.settled.time, run.settled.time, 0);
  const total = timings.total ?? (end ?? now) - t0;
  return { rows, total: Math.max(total, ...rows.map((r) => r.start + r.dur), 0.001) };
}

let clockSkew = 0; // local clock minus the proxy's, from the newest event
export function noteClock(envTime) {
  if (typeof envTime === "number") clockSkew = Date.now() / 1000 - envTime;
}
function liveNow() {
  return Date.now() / 1000 - clockSkew;
}

export function renderTimeline(el, run) {
  const { rows, total } = timelineRows(run);
  if (!rows.length) {
    put(el, h("p", { class: "muted" }, "Stages appear as the run goes."));
    return;
  }
  put(
    el,
    h(
      "div",
      { class: "tl" },
      rows.map((r) =>
        h(
          "div",
          { class: `tl-row ${r.key.startsWith("round") ? "round" : r.key.startsWith("candidate") ? "candidate" : r.key}${r.live ? " live" : ""}`, dataset: { stage: r.key }, title: r.title ?? null },
          h("span", { class: "tl-label" }, r.label),
          h(
            "span",
            { class: "tl-track" },
            h("span", { class: "tl-bar", style: { left: `${(100 * r.start) / total}%`, width: `max(3px, ${(100 * r.dur) / total}%)` } }),
          ),
          h("span", { class: "tl-dur" }, r.note ?? (["settle", "answer", "replaced"].includes(r.key) ? `@ ${fmtSecs(r.start)}` : r.live ? `${fmtSecs(r.dur)}…` : fmtSecs(r.dur))),
        ),
      ),
      h("div", { class: "tl-total" }, h("span", null, run.done || run.failed ? "Total" : "Elapsed"), h("b", null, fmtSecs(total))),
    ),
  );
}

// ---------- costs ----------

export function renderCosts(el, run) {
  const seats = seatCosts(run);
  const stages = run.done?.stages ?? null;
  const usage = run.done?.usage;
  const totalCost = run.done?.cost ?? [...seats.values()].reduce((s, v) => s + (v.cost ?? 0), 0);
  const totalTokens = usage?.total_tokens ?? [...seats.values()].reduce((s, v) => s + (v.total_tokens ?? 0), 0);
  const maxSeat = Math.max(1e-12, ...[...seats.values()].map((v) => v.cost ?? 0));
  const stageRows = stages ? Object.entries(stages) : [];
  const maxStage = Math.max(1e-12, ...stageRows.map(([, v]) => v.cost ?? 0));
  const bar = (v, max, color) => h("span", { class: "mini-bar" }, h("span", { style: { width: `${Math.min(100, (100 * (v ?? 0)) / max)}%`, background: color } }));
  put(
    el,
    h(
      "div",
      { class: "cost-totals" },
      h("div", null, h("span", { class: "k" }, run.done ? "total cost" : "cost so far"), h("b", null, fmtUsd(totalCost))),
      h("div", null, h("span", { class: "k" }, "tokens"), h("b", null, fmtInt(totalTokens))),
      usage && h("div", null, h("span", { class: "k" }, "prompt / completion"), h("b", null, `${fmtInt(usage.prompt_tokens)} / ${fmtInt(usage.completion_tokens)}`)),
      run.earlyStop?.saved
        ? h("div", { class: "saved", title: `early stop: ${run.earlyStop.saved} seat(s) not asked, at the answered seats' mean cost` }, h("span", { class: "k" }, "early stop saved"), h("b", null, `≈ ${fmtUsd(run.earlyStop.cost_saved_usd)}`))
        : null,
    ),
    stageRows.length
      ? h(
          "table",
          { class: "tbl" },
          h("thead", null, h("tr", null, h("th", null, "Stage"), h("th", null, "Calls"), h("th", null, "Tokens"), h("th", { class: "num" }, "Cost"), h("th", null, ""))),
          h(
            "tbody",
            null,
            stageRows.map(([stage, v]) =>
              h("tr", null, h("td", null, stage), h("td", null, fmtInt(v.calls)), h("td", null, fmtInt(v.total_tokens)), h("td", { class: "num" }, fmtUsd(v.cost)), h("td", { class: "bar-cell" }, bar(v.cost, maxStage, "#4cc9f0"))),
            ),
          ),
        )
      : h("p", { class: "muted small" }, run.done ? "No per-stage breakdown." : "Per-stage costs arrive with run_done; per-seat costs add up live."),
    seats.size
      ? h(
          "table",
          { class: "tbl" },
          h("thead", null, h("tr", null, h("th", null, "Seat"), h("th", null, "Calls"), h("th", null, "Tokens"), h("th", { class: "num" }, "Cost"), h("th", null, ""))),
          h(
            "tbody",
            null,
            [...seats].map(([seat, v]) =>
              h("tr", null, h("td", null, seatChip(seat), run.seats.get(seat)?.skipped.size ? h("span", { class: "muted small" }, " not asked") : null), h("td", null, fmtInt(v.calls)), h("td", null, fmtInt(v.total_tokens)), h("td", { class: "num" }, fmtUsd(v.cost)), h("td", { class: "bar-cell" }, bar(v.cost, maxSeat, seatColor(seat)))),
            ),
          ),
        )
      : null,
  );
}

// ---------- settlement ----------

export function renderSettlement(el, run) {
  const s = run.settled;
  const bounty = s?.bounty ?? run.info?.bounty ?? null;
  if (!s) {
    put(
      el,
      h(
        "p",
        { class: "muted" },
        !bounty
          ? "No bounty on this run."
          : run.failed
            ? `Bounty of ${fmtMinor(bounty.amount, bounty.currency)}: not settled, the run failed; nothing was paid.`
            : run.done
              ? `Bounty of ${fmtMinor(bounty.amount, bounty.currency)}: no settlement was reported.`
              : `Bounty of ${fmtMinor(bounty.amount, bounty.currency)}: paid out when the run settles.`,
      ),
    );
    return;
  }
  const cur = bounty?.currency ?? "USD";
  const amount = bounty?.amount ?? 0;
  const payees = byPayee(s.payouts ?? []);
  const scale = Math.max(1, ...payees.map((p) => p.amount)); // bars relative to the largest payee
  put(
    el,
    h(
      "div",
      { class: "settle-head" },
      h("span", { class: `badge st-${s.status === "settled" ? "ok" : "failed"}` }, s.status),
      h("span", null, "bounty ", h("b", null, fmtMinor(amount, cur))),
      s.unallocated ? h("span", { class: "muted" }, `unallocated ${fmtMinor(s.unallocated, cur)}`) : null,
    ),
    s.error && h("div", { class: "notice bad" }, s.error),
    payees.length
      ? h(
          "div",
          { class: "payouts" },
          payees.map((p) =>
            h(
              "div",
              { class: "payout", "data-testid": "payout-bar", dataset: { payee: p.payee, seats: p.seats.join(",") }, title: `${p.payee}: equal ${fmtMinor(p.equal, cur)} + impact ${fmtMinor(p.impact, cur)}` },
              h("div", { class: "payout-label" }, h("span", { class: "payee" }, p.payee), h("span", { class: "muted seats" }, p.seats.length ? ` (${p.seats.join(", ")})` : ""), h("b", null, fmtMinor(p.amount, cur))),
              h(
                "div",
                { class: "payout-track" },
                h("span", { class: "seg equal", style: { width: `${(100 * p.equal) / scale}%` } }),
                h("span", { class: "seg impact", style: { width: `${(100 * p.impact) / scale}%` } }),
              ),
            ),
          ),
          h("div", { class: "legend-row" }, h("span", { class: "sw equal" }), "equal share (75%)", h("span", { class: "sw impact" }), "impact share (25%)"),
        )
      : h("p", { class: "muted" }, "No payouts."),
    s.receipt_id && h("div", { class: "receipt" }, h("span", { class: "k" }, "receipt"), h("code", null, s.receipt_id)),
    s.receipt_url && receiptViewer(s.receipt_url),
  );
}

function receiptViewer(url) {
  const pre = h("pre", { class: "receipt-json" }, "");
  const details = h("details", { class: "receipt-details" }, h("summary", null, "Receipt JSON"), pre);
  const link = h(
    "a",
    {
      href: url,
      class: "receipt-link",
      "data-testid": "receipt-link",
      onclick: async (ev) => {
        ev.preventDefault();
        details.open = true;
        pre.textContent = "Loading…";
        try {
          pre.textContent = JSON.stringify(await getReceipt(url), null, 2);
        } catch (err) {
          pre.textContent = err.message;
          if (err.unauthorized) window.dispatchEvent(new CustomEvent("chorus:error", { detail: err }));
        }
      },
    },
    "View signed receipt",
  );
  return h("div", { class: "receipt-view" }, link, details);
}

// ---------- helpers ----------

/** One row per payee (several seats may pay the same peer), in the order payouts list them. */
export function byPayee(payouts) {
  const rows = new Map();
  for (const p of payouts) {
    const key = p.payee ?? p.seat ?? "—";
    const amount = p.amount ?? 0;
    const equal = p.equal ?? amount;
    const impact = p.impact ?? Math.max(0, amount - equal);
    const row = rows.get(key) ?? { payee: key, seats: [], amount: 0, equal: 0, impact: 0 };
    if (p.seat) row.seats.push(p.seat);
    row.amount += amount;
    row.equal += equal;
    row.impact += impact;
    rows.set(key, row);
  }
  return [...rows.values()];
}

export function seatChip(seat) {
  if (!seat) return h("span", { class: "muted" }, "—");
  return h("span", { class: "chip", style: { "--seat": seatColor(seat) } }, seat);
}

function humanize(s) {
  return String(s).replace(/_/g, " ");
}
