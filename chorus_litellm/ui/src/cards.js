// One card per seat: who it is, how each round went, and what it said (latest round first).
import { renderMarkdown } from "./md.js";
import { ballotOf, isVoteRound } from "./state.js";
import { fmtInt, fmtPct, fmtSecs, fmtUsd, h, put, seatColor } from "./util.js";

const STATUS_LABEL = { ok: "ok", failed: "failed", cancelled: "cancelled", echo: "echo", pending: "thinking…", skipped: "not asked" };

/** A seat's state in round r: its answer's status, "pending" while asked, "skipped" if never asked. */
function statusIn(seat, r) {
  return seat.answers.get(r)?.status ?? (seat.pending.has(r) ? "pending" : seat.skipped.has(r) ? "skipped" : null);
}

export class AgentCards {
  constructor(container) {
    this.container = container;
    this.selected = new Map(); // seat -> round chosen in its tabs (absent: latest)
    this.cards = new Map();
  }

  clear() {
    this.selected.clear();
    this.cards.clear();
    this.container.replaceChildren();
  }

  /** Show a seat's answer for a round (from a click in the graph) and bring its card into view. */
  focus(seat, round, run) {
    this.selected.set(seat, round);
    this.update(run);
    const card = this.cards.get(seat);
    if (card) {
      card.scrollIntoView({ behavior: "smooth", block: "nearest" });
      card.classList.remove("flash");
      void card.offsetWidth;
      card.classList.add("flash");
    }
  }

  update(run) {
    for (const seat of run.seats.values()) {
      let card = this.cards.get(seat.seat);
      if (!card) {
        card = h("article", { class: "seat-card", "data-testid": "agent-card", dataset: { seat: seat.seat } });
        card.style.setProperty("--seat", seatColor(seat.seat));
        this.cards.set(seat.seat, card);
        this.container.append(card);
      }
      this.render(card, seat, run);
    }
  }

  render(card, seat, run) {
    const rounds = new Set([...seat.answers.keys(), ...seat.pending, ...seat.skipped]);
    const order = [...rounds].sort((a, b) => b - a); // latest first
    let round = this.selected.get(seat.seat);
    if (round == null || !rounds.has(round)) round = order[0];
    const a = round != null ? seat.answers.get(round) : null;
    const status = round != null ? statusIn(seat, round) : null;
    const done = round != null ? run.roundDone.get(round) : null;
    const voice = done?.consensus === seat.seat ? "consensus" : done?.dissent === seat.seat ? "dissent" : null;
    const flip = done?.flips?.find?.((f) => f.seat === seat.seat);
    const filteredReason = done?.filtered?.[seat.seat];
    const stage = round != null ? run.roundStarts.get(round)?.stage : null;
    const ballot = round != null && a?.text && isVoteRound(run, round) ? ballotOf(run, seat.seat, round) : null;
    card.dataset.status = status ?? "none";
    card.classList.toggle("is-consensus", voice === "consensus");
    card.classList.toggle("is-dissent", voice === "dissent");

    const tokens = a?.tokens ? `${fmtInt(a.tokens.prompt)} → ${fmtInt(a.tokens.completion)}` : "—";
    const early = status === "skipped" ? run.earlyStop : null;
    put(
      card,
      h(
        "header",
        { class: "seat-head" },
        h("span", { class: "seat-dot" }),
        h("h3", { class: "seat-name", title: seat.seat }, seat.seat),
        voice && h("span", { class: `voice-tag ${voice}`, title: `${voice} voice in round ${round}` }, voice === "consensus" ? "★ consensus" : "⚑ dissent"),
        status && h("span", { class: `badge st-${status}`, "data-testid": "status-badge" }, STATUS_LABEL[status] ?? status),
      ),
      h(
        "div",
        { class: "seat-meta" },
        h("span", { class: "model", title: "model" }, seat.model ?? "—"),
        seat.persona && h("span", { class: "persona", title: "persona" }, seat.persona),
        seat.payee && h("span", { class: "payee", title: "payee" }, `→ ${seat.payee}`),
      ),
      h(
        "dl",
        { class: "seat-stats" },
        stat("latency", a?.latency_s != null ? fmtSecs(a.latency_s) : "—"),
        stat("tokens", tokens, "prompt → completion tokens"),
        stat("cost", a?.cost != null ? fmtUsd(a.cost) : "—"),
      ),
      order.length > 1 &&
        h(
          "nav",
          { class: "round-tabs", role: "tablist" },
          order.map((r) => {
            const ar = seat.answers.get(r);
            const st = statusIn(seat, r) ?? "none";
            const dr = run.roundDone.get(r);
            const b = ar?.text && isVoteRound(run, r) ? ballotOf(run, seat.seat, r) : null;
            const mark = b ? (b.accept === true ? " ✓" : b.accept === false ? " ✕" : " ?") : dr?.consensus === seat.seat ? " ★" : dr?.dissent === seat.seat ? " ⚑" : "";
            return h(
              "button",
              {
                class: `tab st-${st}${r === round ? " active" : ""}`,
                role: "tab",
                "aria-selected": r === round ? "true" : "false",
                title: `round ${r}: ${STATUS_LABEL[st] ?? "no answer"}`,
                onclick: () => {
                  this.selected.set(seat.seat, r);
                  this.render(card, seat, run);
                },
              },
              `R${r}${mark}`,
            );
          }),
        ),
      stage === "critique" && a?.text && h("div", { class: "seat-stage" }, "Critique of the anonymized drafts"),
      early
        ? h(
            "div",
            { class: "seat-text skipped", "data-testid": "skipped-note" },
            `Not asked (early stop): round ${early.round}'s first wave (${early.asked} seat${early.asked === 1 ? "" : "s"}) had already settled the vote.`,
          )
        : ballot
        ? voteBox(ballot, done?.candidate ?? null, a.text)
        : h(
        "div",
        { class: `seat-text${status === "echo" ? " dim" : ""}` },
        a?.text ? renderMarkdown(a.text) : status === "pending" ? h("span", { class: "typing" }, "answering…") : h("span", { class: "muted" }, !a ? (run.done || run.failed ? "Not called in this run." : "No answer yet.") : a.status === "failed" || a.status === "cancelled" ? `No answer: ${a.status}.` : "(empty answer)"),
        a?.truncated && h("span", { class: "trunc" }, " … (truncated)"),
      ),
      (a?.kind || a?.detail) && h("div", { class: "seat-note bad" }, `${a.kind ?? "error"}${a.detail ? `: ${a.detail}` : ""}`),
      (status === "echo" || filteredReason) && h("div", { class: "seat-note echo" }, `Echo-filtered${a?.reason || filteredReason ? `: ${a?.reason ?? filteredReason}` : ""}`),
      flip && h("div", { class: "seat-note flip" }, `Changed its mind in round ${flip.round}: cluster ${fmtCluster(flip.from)} → ${fmtCluster(flip.to)}`),
    );
  }
}

/** A consensus vote as a person reads it: accept or reject, confidence, objection, blocking issues. */
function voteBox(b, version, raw) {
  const verdict = b.accept === true ? "accepts" : b.accept === false ? "rejects" : "unreadable";
  return h(
    "div",
    { class: `vote-box ${verdict}`, "data-testid": "vote", dataset: { accept: String(b.accept) } },
    h(
      "div",
      { class: "vote-head" },
      h("span", { class: `vote-badge ${verdict}` }, b.accept === true ? "✓ accept" : b.accept === false ? "✕ reject" : "? unreadable vote"),
      h("span", { class: "muted" }, version ? `candidate v${version}` : "the candidate"),
      b.confidence != null && h("span", { class: "muted" }, `confidence ${fmtPct(b.confidence)}`),
      b.cast === false && h("span", { class: "muted" }, "standing vote"),
    ),
    b.objection && h("div", { class: "vote-objection" }, h("b", null, "Objection: "), b.objection),
    b.blocking?.length ? h("ul", { class: "vote-blocking" }, b.blocking.map((x) => h("li", null, h("b", null, "Blocking: "), x))) : null,
    h("details", { class: "vote-raw" }, h("summary", null, "raw vote"), h("code", null, raw ?? "")),
  );
}

function stat(label, value, title = null) {
  return h("div", { title }, h("dt", null, label), h("dd", null, value));
}

function fmtCluster(c) {
  return typeof c === "number" ? (c >= 0 ? c + 1 : "none") : String(c ?? "?");
}
