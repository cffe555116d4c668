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
    points: [],
    links: new Map(), // round -> [[a, b, sim]]
    judge: null,
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
    s = { seat: name, model: model ?? null, persona: null, payee: null, peer: null, answers: new Map(), pending: new Set() };
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
      return ["summary", "cards", "timeline", "costs", "settlement"];
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
      for (const name of d.seats ?? []) seatOf(run, name).pending.add(d.round);
      return ["cards", "timeline", "summary"];
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
      if (Array.isArray(d.points)) run.points = d.points;
      run.links.set(d.round, d.links ?? []);
      for (const s of run.seats.values()) s.pending.delete(d.round);
      return ["graph", "charts", "cards", "timeline", "summary"];
    }
    case "judge_done":
      run.judge = { ...d, time: t };
      return ["judge", "timeline"];
    case "synthesis_started":
      run.synthesis = { model: d.model, time: t, lastTime: t };
      return ["answer", "timeline"];
    case "answer_delta":
      run.answer += d.text ?? "";
      if (!run.synthesis) run.synthesis = { model: null, time: t, lastTime: t };
      run.synthesis.lastTime = t;
      return ["answer"];
    case "settled":
      run.settled = { ...d, time: t };
      return ["settlement", "timeline"];
    case "run_done":
      run.done = { ...d, time: t };
      if (typeof d.answer === "string" && d.answer && d.answer !== run.answer) run.answer = d.answer;
      for (const s of run.seats.values()) s.pending.clear();
      return ["summary", "answer", "charts", "timeline", "costs", "cards", "settlement"];
    case "run_failed":
      run.failed = { ...d, time: t };
      for (const s of run.seats.values()) s.pending.clear();
      return ["summary", "timeline", "cards", "answer"];
    default:
      return [];
  }
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
