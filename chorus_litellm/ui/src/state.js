// A run as the page knows it, folded from the event envelopes in order.
// apply() returns the names of the views the envelope changed, so main.js redraws only those.

export function emptyRun(id) {
  return {
    id,
    info: null, // run_started payload
    route: null,
    seats: new Map(), // seat -> {seat, model, persona, payee, answers: Map(round -> answer), pending: Set(round)}
    roundStarts: new Map(), // round -> {round, stage, seats, time}
    roundDone: new Map(), // round -> round_done payload + time
    rounds: [], // round numbers that got round_done, in order
    points: [], // every point drawn so far, one per seat and round (round_done's points, merged)
    links: new Map(), // round -> [[a, b, sim]]
    candidates: new Map(), // consensus: version -> {version, stage, model, time, done: candidate_done + time | null}
    judge: null,
    earlyStop: null, // early_stop payload + time: round 1's first wave settled the vote
    quorumLost: null, // quorum_lost payload + time: round 1 missed its quorum, a fallback answers
    replaced: null, // answer_replaced payload + time: the vote guard's draft stands for the synthesis
    synthesis: null, // {model, time, lastTime}
    answer: "",
    settled: null,
    done: null,
    failed: null,
    times: {}, // event type -> time of its (last) envelope
    firstTime: null,
    lastTime: null,
  };
}

function seatOf(run, name, model) {
  let s = run.seats.get(name);
  if (!s) {
    // pending: rounds it was asked in and has not answered; skipped: rounds it was never asked (early stop)
    s = { seat: name, model: model ?? null, persona: null, payee: null, peer: null, answers: new Map(), pending: new Set(), skipped: new Set() };
    run.seats.set(name, s);
  }
  if (model && !s.model) s.model = model;
  return s;
}

export function apply(run, env) {
  const d = env.data ?? {};
  const t = typeof env.time === "number" ? env.time : null;
  if (t != null) {
    if (run.firstTime == null) run.firstTime = t;
    run.lastTime = Math.max(run.lastTime ?? t, t);
    run.times[env.type] = t;
  }
  switch (env.type) {
    case "run_started":
      run.info = d;
      for (const s of d.seats ?? []) {
        const seat = seatOf(run, s.seat, s.model);
        seat.model = s.model ?? seat.model;
        seat.persona = s.persona ?? null;
        seat.payee = s.payee ?? null;
        seat.peer = s.peer ?? null;
      }
      return ["summary", "cards", "timeline", "costs", "settlement", "judge", "answer"];
    case "seated":
      // Pool seats drawn for this run (a marketplace profile): who sits where, as whom.
      for (const s of d.seats ?? []) {
        const seat = seatOf(run, s.seat, s.model);
        Object.assign(seat, { persona: s.persona ?? null, payee: s.payee ?? null, peer: s.peer ?? null });
      }
      return ["summary", "cards", "network"];
    case "route":
      run.route = d;
      return ["summary", "timeline", "graph"];
    case "round_started": {
      run.roundStarts.set(d.round, { ...d, time: t });
      settleRounds(run, d.round); // a new round: nobody is still answering an earlier one
      for (const name of d.seats ?? []) seatOf(run, name).pending.add(d.round);
      return ["cards", "timeline", "summary", ...(d.stage === "vote" ? ["judge"] : [])];
    }
    case "answer": {
      const seat = seatOf(run, d.seat, d.model);
      seat.pending.delete(d.round);
      const prev = seat.answers.get(d.round);
      if (prev && d.status === "echo") {
        // The echo watchdog's verdict on an answer we already have: keep its text and numbers.
        seat.answers.set(d.round, { ...prev, ...pick(d), status: "echo", reason: d.reason ?? prev.reason, time: t });
      } else {
        seat.answers.set(d.round, { ...d, time: t });
      }
      return ["cards", "costs"];
    }
    case "round_done": {
      run.roundDone.set(d.round, { ...d, time: t });
      if (!run.rounds.includes(d.round)) run.rounds.push(d.round);
      // A debate round sends every point so far, a consensus vote round only its candidate and
      // a critique round none: merge by seat and round, so no round wipes the map.
      if (Array.isArray(d.points) && d.points.length) run.points = mergePoints(run.points, d.points);
      run.links.set(d.round, d.links ?? []);
      for (const s of run.seats.values()) s.pending.delete(d.round);
      return ["graph", "charts", "cards", "timeline", "summary", ...(d.votes ? ["judge"] : [])];
    }
    case "early_stop": {
      // Round 1's first wave settled the vote: the seats held back are never asked.
      run.earlyStop = { ...d, time: t };
      for (const name of d.saved_seats ?? []) {
        const seat = seatOf(run, name);
        seat.pending.delete(d.round);
        seat.skipped.add(d.round);
      }
      return ["cards", "timeline", "costs", "summary", "charts"];
    }
    case "quorum_lost":
      // Round 1 missed its quorum; panel.on_quorum_failure answers instead (the run goes on, degraded).
      run.quorumLost = { ...d, time: t };
      settleRounds(run);
      return ["cards", "timeline", "summary", "answer"];
    case "judge_done":
      run.judge = { ...d, time: t };
      settleRounds(run);
      return ["judge", "timeline", "cards"];
    case "candidate_started":
      run.candidates.set(d.version, { ...d, time: t, done: run.candidates.get(d.version)?.done ?? null });
      settleRounds(run);
      return ["timeline", "judge", "graph", "cards"];
    case "candidate_done": {
      const c = run.candidates.get(d.version) ?? { version: d.version, stage: d.stage, model: d.model, time: null };
      run.candidates.set(d.version, { ...c, done: { ...d, time: t } });
      return ["timeline", "judge", "graph", "answer"];
    }
    case "synthesis_started":
      run.synthesis = { model: d.model, time: t, lastTime: t };
      settleRounds(run);
      return ["answer", "timeline", "cards"];
    case "answer_replaced":
      run.replaced = { ...d, time: t };
      return ["answer", "summary", "timeline"];
    case "answer_delta":
      run.answer += d.text ?? "";
      // No synthesis_started: the protocol wrote the answer itself (consensus, a cost cap).
      if (!run.synthesis) run.synthesis = { model: null, time: t, lastTime: t, implicit: true };
      run.synthesis.lastTime = t;
      return ["answer"];
    case "synthesis_done":
      if (run.synthesis) run.synthesis.doneTime = t;
      return ["timeline"];
    case "settled":
      run.settled = { ...d, time: t };
      return ["settlement", "timeline"];
    case "run_done":
      run.done = { ...d, time: t };
      if (typeof d.answer === "string" && d.answer && d.answer !== run.answer) run.answer = d.answer;
      for (const s of run.seats.values()) s.pending.clear();
      return ["summary", "answer", "charts", "timeline", "costs", "cards", "settlement", "judge"];
    case "run_failed":
      run.failed = { ...d, time: t };
      for (const s of run.seats.values()) s.pending.clear();
      return ["summary", "timeline", "cards", "answer"];
    default:
      return [];
  }
}

/**
 * The rounds before `before` (all, without it) are over: the run moved on, so no seat is
 * still answering them (whatever their round_done, measured later, will say).
 */
function settleRounds(run, before = Infinity) {
  for (const s of run.seats.values()) for (const r of s.pending) if (r < before) s.pending.delete(r);
}

function mergePoints(old, fresh) {
  const key = (p) => `${p.seat}#${p.round}`;
  const byKey = new Map(old.map((p) => [key(p), p]));
  for (const p of fresh) if (p && p.seat != null && p.round != null) byKey.set(key(p), p);
  return [...byKey.values()];
}

function pick(d) {
  const out = {};
  for (const [k, v] of Object.entries(d)) if (v != null && !(k === "text" && v === "")) out[k] = v;
  return out;
}

/** The seat names in display order: configured order, then any that turned up later. */
export function seatNames(run) {
  return [...run.seats.keys()];
}

/** Latest round's voices, for markers on cards and in the graph legend. */
export function latestVoices(run) {
  const r = run.rounds[run.rounds.length - 1];
  const d = r != null ? run.roundDone.get(r) : null;
  return { round: r ?? null, consensus: d?.consensus ?? null, dissent: d?.dissent ?? null };
}

/** Per-seat cost and tokens: run_done's totals when there, else summed from answers so far. */
export function seatCosts(run) {
  const out = new Map();
  for (const s of run.seats.values()) {
    let calls = 0;
    let tokens = 0;
    let cost = 0;
    for (const a of s.answers.values()) {
      calls += 1;
      tokens += (a.tokens?.prompt ?? 0) + (a.tokens?.completion ?? 0);
      cost += a.cost ?? 0;
    }
    out.set(s.seat, { calls, total_tokens: tokens, cost });
  }
  const final = run.done?.seats;
  if (final && typeof final === "object") {
    for (const [seat, v] of Object.entries(final)) out.set(seat, { ...(out.get(seat) ?? {}), ...v });
  }
  return out;
}

/** Whether round r is a consensus vote on a candidate (its round_done carries the ballots). */
export function isVoteRound(run, r) {
  return run.roundStarts.get(r)?.stage === "vote" || run.roundDone.get(r)?.votes != null;
}

/** A consensus run (drafts, critiques, candidates, votes; no judge). */
export function isConsensus(run) {
  return run.info?.protocol === "consensus" || run.candidates.size > 0;
}

/** The vote rounds so far, in order: [{round, vote: 1.., candidate, votes, share}]. */
export function voteRounds(run) {
  return [...run.roundStarts.keys(), ...run.roundDone.keys()]
    .filter((r, i, all) => all.indexOf(r) === i && isVoteRound(run, r))
    .sort((a, b) => a - b)
    .map((r, i) => {
      const d = run.roundDone.get(r) ?? null;
      return { round: r, vote: i + 1, candidate: d?.candidate ?? null, votes: d?.votes ?? null, share: d?.vote?.share ?? null, done: !!d };
    });
}

/**
 * A seat's ballot in a vote round: the proxy's reading of it (round_done `votes`) or, until
 * the round ends, the seat's answer read as the vote JSON it should be. null: no vote.
 */
export function ballotOf(run, seat, r) {
  const read = run.roundDone.get(r)?.votes?.[seat];
  if (read) return read;
  const text = run.seats.get(seat)?.answers.get(r)?.text;
  return text ? parseVote(text) : null;
}

export function parseVote(text) {
  const s = String(text ?? "");
  const start = s.indexOf("{");
  const end = s.lastIndexOf("}");
  let data = null;
  if (start >= 0 && end > start) {
    try {
      data = JSON.parse(s.slice(start, end + 1));
    } catch {
      data = null;
    }
  }
  if (!data || typeof data !== "object" || typeof data.accept !== "boolean") {
    return { accept: null, confidence: null, objection: "unreadable vote", blocking: [], cast: true };
  }
  const confidence = Number.isFinite(+data.confidence) && data.confidence != null ? Math.max(0, Math.min(1, +data.confidence)) : null;
  const blocking = Array.isArray(data.blocking) ? data.blocking.map(String).filter((b) => b.trim()) : [];
  return { accept: data.accept, confidence, objection: data.objection ? String(data.objection) : "", blocking, cast: true };
}
