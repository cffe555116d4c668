"""Multi-round debate in embedding space.

Round 1 is the panel fan-out (each seat with its persona). After every round:
1) embed the answers (started as each answer arrives, so only the last one waits);
2) drop echoes (core/stages/echo.py) from the pool for the round, recording why; a seat
   flagged `echo.prune_after` rounds in a row is pruned: asked no more, unpaid, and
   named with the reason in the summary, the transcript and the receipt;
3) build the cosine kNN graph, pick the consensus voice (most central answer of the
   largest cluster) and the dissent voice (the eligible answer farthest from the rest);
4) measure: text agreement (mean pairwise cosine), centroid shift, clusters, extracted
   answers (core/stages/extract.py) and their confidence-weighted vote, whose leader's share
   of all the answers is the answer agreement;
5) stop if round 1 already agrees, if extracted answers are unanimous, if the answers
   stopped moving while agreeing, if the token budget or the cost cap is spent, or at
   max_rounds. Where answers are extractable, "agrees" means the answer agreement
   reaches `answer_agreement`, whatever the prose embeds to; the embedding's agreement
   decides only for open-ended answers. Round 1 is asked in waves under
   `panel.early_stop`: a settled first wave is an agreeing round 1;
6) otherwise every agent gets both voices, anonymized, plus its own previous answer, and
   answers again; with `debate.voices: per_agent`, each agent's own voices instead: the
   eligible answer nearest to its own and the farthest.
Yields `Progress` per round, then one `Outcome` (its summary from a `Debate`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import QuorumError
from ..events import Answered, Progress, RoundDone
from ..types import DeliberationSummary, Message, Outcome, Panel, PanelAnswer, Seat, SeatResult
from . import atlas, budget, echo, geometry, prompts
from .extract import answer_key, confidence, tally
from .panel import results as panel_results
from .panel import round_of

if TYPE_CHECKING:
    from ..context import RunContext


@dataclass(frozen=True)
class Turn:
    seat: str
    round: int
    text: str
    extracted: str | None
    confidence: float
    echo: str | None  # why the watchdog filtered it, or None


@dataclass(frozen=True)
class RoundStats:
    round: int
    agreement: float
    shift: float | None
    clusters: list[list[str]]
    consensus: str | None
    dissent: str | None
    filtered: dict[str, str]
    vote: tuple[str | None, float]
    answer_agreement: float | None = None  # the leading answer's share of all answers; None: open-ended
    agreed: bool = False  # by answers where they are extractable, else by text

    def as_dict(self) -> dict[str, Any]:
        return {"round": self.round, "agreement": round(self.agreement, 4),
                "answer_agreement": None if self.answer_agreement is None else round(self.answer_agreement, 4),
                "agreed": self.agreed,
                "shift": None if self.shift is None else round(self.shift, 4), "clusters": self.clusters,
                "consensus": self.consensus, "dissent": self.dissent, "filtered": self.filtered,
                "vote": {"answer": self.vote[0], "share": round(self.vote[1], 4)} if self.vote[0] else None}


@dataclass
class Debate:
    turns: list[list[Turn]]
    stats: list[RoundStats]
    stop_reason: str
    final: Panel  # the last completed round's eligible answers
    best: PanelAnswer  # its consensus voice: the best candidate if the budget ran out
    vote: tuple[str | None, float]
    confidence: float
    minority: list[str]
    flips: list[dict] = field(default_factory=list)
    embedding_model: str = ""
    pruned: dict[str, dict] = field(default_factory=dict)  # seat -> {"round", "reason"}

    @property
    def budget_exceeded(self) -> bool:
        """Stopped by the token budget or the cost cap: the consensus voice stands."""
        return self.stop_reason in ("token_budget_exceeded", "cost_cap_reached")

    def summary(self) -> DeliberationSummary:
        return {
            "rounds": len(self.stats),
            "stop_reason": self.stop_reason,
            "consensus_confidence": round(self.confidence, 4),
            "vote": {"answer": self.vote[0], "share": round(self.vote[1], 4)} if self.vote[0] else None,
            "minority": self.minority,
            "flips": self.flips,
            "embedding_model": self.embedding_model,
            "token_budget_exceeded": self.stop_reason == "token_budget_exceeded",
            "cost_cap_reached": self.stop_reason == "cost_cap_reached",
            "pruned": self.pruned,
            "stats": [s.as_dict() for s in self.stats],
        }

    def transcript(self) -> list[list[dict]]:
        return [[t.__dict__ for t in round_turns] for round_turns in self.turns]


def _flips(turns: list[list[Turn]], stats: list[RoundStats]) -> list[dict]:
    flips = []
    for before, after, st in zip(turns, turns[1:], stats[1:], strict=False):
        old = {t.seat: t.extracted for t in before}
        for t in after:
            if old.get(t.seat) and t.extracted and old[t.seat] != t.extracted:
                flips.append({"seat": t.seat, "round": t.round, "from": old[t.seat], "to": t.extracted,
                              "to_majority": t.extracted == st.vote[0]})
    return flips


async def deliberate(ctx: RunContext) -> AsyncGenerator[Progress | Outcome, None]:
    """The `debate` protocol (module docstring): rounds until a stopping rule fires."""
    config, embedder = ctx.preset, ctx.embedder
    assert embedder is not None, "a debate measures agreement with an embedder"
    base = ctx.seat_messages()
    question = ctx.question
    q_vec = (await embedder.encode([question]))[0]
    turns: list[list[Turn]] = []
    stats: list[RoundStats] = []
    history: list[SeatResult] = []
    shown: dict[str, list[tuple[str, np.ndarray]]] = {}
    per_seat = base
    prev: tuple[Panel, np.ndarray, list[int], list[Turn]] | None = None
    active = ctx.seats
    streaks: dict[str, int] = {}  # rounds in a row the watchdog flagged each seat
    pruned: dict[str, dict] = {}
    stop = "max_rounds"
    space = atlas.Atlas(config.link)
    for round_no in range(1, config.max_rounds + 1):
        try:
            result, vecs = await _round(ctx, active, per_seat, round_no)
        except QuorumError:
            if prev is None:
                raise
            stop = "quorum_lost"
            break
        round_turns, eligible = [], []
        for i, answer in enumerate(result.answers):
            text = answer.completion.text
            reason = echo.check(text, vecs[i], q_vec, shown.get(answer.seat.name, []),
                                parrot_residual=config.echo.parrot_residual,
                                copy_similarity=config.echo.copy_similarity)
            round_turns.append(Turn(answer.seat.name, round_no, text, answer_key(text, question), confidence(text),
                                    reason))
            if reason is None:
                eligible.append(i)
            else:
                ctx.emit(Answered(answer, round_no, echo=reason))
        turns.append(round_turns)
        for t in round_turns:
            streaks[t.seat] = streaks.get(t.seat, 0) + 1 if t.echo else 0
        limit = config.echo.prune_after
        now_pruned = {t.seat: f"flagged by the echo watchdog {streaks[t.seat]} rounds in a row ({t.echo})"
                      for t in round_turns if t.echo and limit and streaks[t.seat] >= limit}
        pruned.update({seat: {"round": round_no, "reason": why} for seat, why in now_pruned.items()})
        history += [dataclasses.replace(r, pruned=now_pruned[r.seat.name]) if r.seat.name in now_pruned else r
                    for r in panel_results(result, round_no, {t.seat: t.echo for t in round_turns if t.echo})]
        for seat, why in now_pruned.items():
            yield Progress("debate", f"{seat} pruned: {why}.")
        if len(eligible) < min(ctx.quorum, len(result.answers)) or not eligible:
            if prev is None:
                detail = "; ".join(f"{t.seat}: echo ({t.echo})" for t in round_turns if t.echo)
                raise QuorumError(f"panel quorum not met after the echo watchdog: {detail}")
            stop = "quorum_lost"
            break
        names = [result.answers[i].seat.name for i in eligible]
        lay = atlas.layout(vecs, eligible, link=config.link, dissent=config.dissent)
        cons, diss, agreement = lay.consensus, lay.dissent, lay.agreement
        count = tally([(round_turns[i].extracted, round_turns[i].confidence) for i in eligible])
        vote = (count.answer, count.share)
        answer_agreement = count.agreement if count.extractable else None
        agreed = (answer_agreement >= config.answer_agreement if answer_agreement is not None
                  else agreement >= config.agreement)
        extracted = {round_turns[i].extracted for i in eligible}
        unanimous = len(eligible) > 1 and None not in extracted and len(extracted) == 1
        shift = geometry.centroid_shift(prev[1][prev[2]], vecs[eligible]) if prev else None
        stats.append(RoundStats(
            round_no, agreement, shift, [[names[j] for j in c] for c in lay.clusters],
            result.answers[cons].seat.name, result.answers[diss].seat.name if diss is not None else None,
            {t.seat: t.echo for t in round_turns if t.echo}, vote, answer_agreement, agreed,
        ))
        prev = (result, vecs, eligible, round_turns)
        flips = _flips(turns[-2:], stats[-2:]) if round_no > 1 else []
        ctx.emit(RoundDone(**stats[-1].as_dict(), flips=flips,
                           **(space.add(round_no, [a.seat.name for a in result.answers], vecs, lay)
                              if ctx.watched else {})))
        yield Progress("debate", _progress(stats[-1], len(result.answers)))

        adaptive = config.adaptive_stop
        if adaptive and round_no == 1 and (agreed or unanimous or result.saved):
            stop = "agreed_in_round_1"
        elif adaptive and round_no > 1 and unanimous:
            stop = "unanimous"
        elif adaptive and shift is not None and shift < config.shift and agreed:
            stop = "converged"
        elif config.max_total_tokens and ctx.tokens_used() >= config.max_total_tokens:
            stop = "token_budget_exceeded"
        elif round_no < config.max_rounds and budget.over_cap(ctx):
            stop = "cost_cap_reached"
        elif round_no == config.max_rounds:
            stop = "max_rounds"
        else:
            shared = [("shared by most panelists", cons)] + ([("most different", diss)] if diss is not None else [])
            per_seat, shown = {}, {}
            for i, answer in enumerate(result.answers):
                name = answer.seat.name
                if config.voices == "per_agent":
                    own = geometry.own_voices(vecs, eligible, i, config.dissent)
                    peer = list(zip(("closest to yours", "farthest from yours"), own, strict=False))
                else:
                    peer = [(label, j) for label, j in shared if j != i]
                shown[name] = [(result.answers[j].completion.text, vecs[j]) for _, j in peer]
                per_seat[name] = [*base[name], {"role": "user", "content": prompts.debate_user(
                    round_no + 1, answer.completion.text,
                    [(label, result.answers[j].completion.text) for label, j in peer])}]
            active = [a.seat for a in result.answers if a.seat.name not in pruned]
            continue
        break

    assert prev is not None
    debate = _conclude(turns, stats, stop, prev, embedder.model_id)
    debate.pruned = pruned
    best = debate.best if debate.budget_exceeded else None  # stop early: the consensus voice stands
    yield Outcome(debate.final, tuple(history), tuple(debate.minority),
                  answer=best.completion.text if best else None, answer_source=best.seat.name if best else None,
                  summary=debate.summary(), transcript=debate.transcript())


async def _round(ctx: RunContext, active: list[Seat], per_seat: dict[str, list[Message]],
                 round_no: int) -> tuple[Panel, np.ndarray]:
    """One round's answers and their embeddings (each started as its answer arrives, and
    cancelled with the round if it fails or is cancelled)."""
    vectors: dict[str, asyncio.Task] = {}
    embedder = ctx.embedder
    assert embedder is not None, "a debate measures agreement with an embedder"

    def embed(answer: PanelAnswer) -> None:
        vectors[answer.seat.name] = asyncio.create_task(embedder.encode([answer.completion.text]))

    try:
        result = await round_of(ctx, active, round_no, per_seat, stage="panel" if round_no == 1 else "debate",
                                on_answer=embed, early=round_no == 1 and ctx.preset.adaptive_stop)
        return result, np.stack([(await vectors[a.seat.name])[0] for a in result.answers])
    finally:
        for task in vectors.values():
            task.cancel()


def _conclude(turns: list[list[Turn]], stats: list[RoundStats], stop: str,
              last: tuple[Panel, np.ndarray, list[int], list[Turn]], embedding_model: str) -> Debate:
    result, _vecs, eligible, round_turns = last
    final_stats = stats[-1]
    winner, share = final_stats.vote
    if winner is not None:
        minority = [round_turns[i].seat for i in eligible if round_turns[i].extracted != winner]
        conf = share
    else:
        majority = set(final_stats.clusters[0])
        minority = [n for c in final_stats.clusters[1:] for n in c] if len(majority) > 1 else []
        conf = max(0.0, min(1.0, final_stats.agreement))
    by_name = {a.seat.name: a for a in result.answers}
    assert final_stats.consensus is not None, "a round with answers has a consensus voice"
    return Debate(
        turns=turns, stats=stats, stop_reason=stop,
        final=Panel(tuple(result.answers[i] for i in eligible), result.failures),
        best=by_name[final_stats.consensus], vote=final_stats.vote, confidence=conf,
        minority=minority, flips=_flips(turns, stats), embedding_model=embedding_model,
    )


def _progress(s: RoundStats, answered: int) -> str:
    shift = "" if s.shift is None else f", shift {s.shift:.3f}"
    vote = (f", vote {s.vote[0]} ({s.vote[1]:.0%}), answers agree {s.answer_agreement:.0%}"
            if s.answer_agreement is not None else f", vote {s.vote[0]} ({s.vote[1]:.0%})" if s.vote[0] else "")
    filtered = "".join(f"; {seat} filtered ({why})" for seat, why in s.filtered.items())
    return (f"Round {s.round}: {answered} answers, agreement {s.agreement:.2f}{shift}, "
            f"{len(s.clusters)} cluster(s){vote}{filtered}.")
