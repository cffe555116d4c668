"""Consensus protocol: draft -> critique -> candidate -> vote -> revise, up to max_rounds.

Every seat drafts; every seat critiques the anonymized drafts; the synthesizer writes one
candidate; every seat votes on it as strict JSON; a majority (or, with
`strict_unanimity`, every voter) accepting ends the loop, otherwise the synthesizer
revises against the objections. An unparseable vote counts as a rejection with the
objection "invalid vote". Yields `Progress` per phase, then one `Outcome` whose answer
is the last candidate (judge and synthesis are not run again). Drafts whose extracted
answers already agree (`debate.answer_agreement`) end the loop before it starts: the
answer is a draft of the majority (stop reason `drafts_agree`).

`debate.revote: dissenters` is the Go seed's loop: votes carry a confidence and blocking
issues; after a revision only the seats that rejected, listed blocking issues or voted
with confidence under `CONFIDENT` vote again (the others' votes stand); an unparseable
vote is skipped, not counted; the majority is of the votes counted; confidence is the
best approval rate over the rounds; without consensus the answer ends with a short
summary of the disagreement (unless the client asked for JSON).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import QuorumError, UpstreamError
from ..request import wants_json
from ..events import CandidateDone, CandidateStarted, Progress, RoundDone, ballots, candidate_point
from ..types import DeliberationSummary, Message, Outcome, Panel, Seat
from . import budget, prompts
from .extract import panel_vote
from .geometry import Projection
from .jsonout import json_object
from .judge import make_labels
from .guard import agreeing_draft
from .panel import answers_agree, close_round, round_of
from .panel import results as panel_results

if TYPE_CHECKING:
    from ..context import RunContext


CONFIDENT = 0.75  # the Go seed: a vote under this confidence is asked again


@dataclass
class Consensus:
    text: str
    reached: bool
    stop_reason: str
    drafts: Panel
    votes: list[dict[str, dict]] = field(default_factory=list)  # per round: seat -> vote cast that round
    approvals: list[float] = field(default_factory=list)  # per round: approval rate of the standing votes
    best_of_rounds: bool = False  # dissenters: confidence is the best approval rate, not the last

    @property
    def confidence(self) -> float:
        if not self.approvals:
            return 0.0
        return max(self.approvals) if self.best_of_rounds else self.approvals[-1]

    def summary(self) -> DeliberationSummary:
        return {"rounds": len(self.votes), "stop_reason": self.stop_reason, "reached": self.reached,
                "consensus_confidence": round(self.confidence, 4), "votes": self.votes,
                "token_budget_exceeded": self.stop_reason == "token_budget_exceeded",
                "cost_cap_reached": self.stop_reason == "cost_cap_reached"}


def parse_vote(text: str) -> dict:
    try:
        data = json_object(text)
        return {"accept": bool(data["accept"]) if isinstance(data["accept"], bool) else False,
                "objection": str(data.get("objection") or "")[:1000]}
    except (ValueError, KeyError, TypeError):
        return {"accept": False, "objection": "invalid vote"}


def parse_scored_vote(text: str) -> dict | None:
    """A vote with confidence and blocking issues; None when it cannot be read (skipped)."""
    try:
        data = json_object(text)
        if not isinstance(data["accept"], bool):
            return None
        confidence = float(data.get("confidence", 1.0))
        blocking = [str(b)[:300] for b in data.get("blocking") or [] if str(b).strip()][:10]
    except (ValueError, KeyError, TypeError):
        return None
    return {"accept": data["accept"], "confidence": max(0.0, min(1.0, confidence)), "blocking": blocking,
            "objection": str(data.get("objection") or "")[:1000]}


def settled(vote: dict) -> bool:
    """A standing vote that is not asked again (dissenters mode)."""
    return vote["accept"] and not vote["blocking"] and vote["confidence"] >= CONFIDENT


def disagreement(votes: dict[str, dict], rounds: int, best: float) -> str:
    """The short note a no-consensus answer ends with."""
    issues = list(dict.fromkeys(i for v in votes.values() if not settled(v)
                                for i in (v["blocking"] or [v["objection"]]) if i))
    rejected = sum(not v["accept"] for v in votes.values())
    listed = "; ".join(issues[:3]) + (f"; and {len(issues) - 3} more" if len(issues) > 3 else "")
    return (f"\n\n---\nNo consensus after {rounds} vote(s): best approval {best:.0%}, {rejected} of {len(votes)} "
            f"counted votes reject this answer" + (f". Open issues: {listed}." if listed else "."))


class _CandidateMap:
    """The live view's map of a consensus run: each candidate voted on, as its vote round's
    `points`, placed among the drafts it draws on: the drafts' map positions (round 1's
    projection) weighted by a softmax of its cosine to each draft. A synthesis is mostly
    new text, off the drafts' principal directions, so projecting it alone would put it
    anywhere; this keeps it on the map, nearest the drafts it resembles."""

    SHARPNESS = 0.05  # softmax temperature over cosines: 0.1 more similar weighs e^2 more

    def __init__(self, ctx: RunContext, drafts: Panel) -> None:
        self.ctx, self.names = ctx, [a.seat.name for a in drafts.answers]
        self.texts = [a.completion.text for a in drafts.answers]
        self.vectors: np.ndarray | None = None
        self.xyz: np.ndarray | None = None

    def close(self, done: RoundDone, text: str | None) -> None:
        """A vote round's `round_done`: at once, or with its candidate's point (measured off
        the critical path) when a viewer renders the map."""
        if self.ctx.watched and self.ctx.embedder is not None and text and self.texts:
            self.ctx.spawn(self._placed(done, text))
        else:
            self.ctx.emit(done)

    async def _placed(self, done: RoundDone, text: str) -> None:
        embedder = self.ctx.embedder
        assert embedder is not None and done.candidate is not None, "close() places only a voted candidate"
        try:
            if self.vectors is None:
                vectors = await embedder.encode([*self.texts, text])
                self.vectors, vector = vectors[:-1], vectors[-1]
                self.xyz = Projection(self.vectors)(self.vectors)  # round 1's map, as drawn
            else:
                vector = (await embedder.encode([text]))[0]
            sims = self.vectors @ vector
            weights = np.exp((sims - sims.max()) / self.SHARPNESS)
            point = candidate_point(done.round, done.candidate, weights @ self.xyz / weights.sum(),
                                    dict(zip(self.names, sims.tolist(), strict=True)))
            done = dataclasses.replace(done, points=[point])
        except Exception as exc:  # noqa: BLE001 - the map is extra: the round's votes still go out
            self.ctx.report.notes.append(f"live view: {type(exc).__name__}: {exc}")
        self.ctx.emit(done)


class _Capped(Exception):
    """The run spent its cost cap: the loop ends with the latest candidate."""


async def deliberate(ctx: RunContext) -> AsyncGenerator[Progress | Outcome, None]:
    """The `consensus` protocol (module docstring). The synthesizer writes with the final
    answer's params (the client's max_tokens, stop, response_format), not the drafts'.
    Once drafts exist, nothing fails the run: a lost quorum or a failed synthesizer call
    ends the loop with the latest candidate, or the first draft if there is none."""
    config, seats = ctx.preset, ctx.seats
    base = ctx.seat_messages()

    rounds = iter(range(1, 3 + config.max_rounds))  # drafts, critiques, then one per vote

    async def everyone(stage: str, per_seat: dict[str, list[Message]], among: list[Seat],
                       quorum: int | None = None) -> Panel:
        return await round_of(ctx, among, next(rounds), per_seat, stage=stage, quorum=quorum)

    def ask_all(instructions: str, data: object, among: list[Seat]) -> dict[str, list[Message]]:
        user = f"{instructions}\n\n{prompts.json_data(data)}"
        return {s.name: [*base[s.name], {"role": "user", "content": user}] for s in among}

    def step() -> None:  # before every step: none starts once the cost cap is spent
        if budget.over_cap(ctx):
            raise _Capped

    written: list[int] = []  # the candidates' versions, for the live view

    async def synthesizer(instructions: str, data: object, stage: str) -> str:
        step()
        version, model = len(written) + 1, ctx.profile.aggregator.synthesizer
        ctx.emit(CandidateStarted(version, stage, model))
        try:
            completion = await ctx.completer.complete(
                model,
                prompts.with_context(ctx.messages, instructions, prompts.json_data(data)),
                timeout=ctx.profile.aggregator.synthesis_timeout_s, stage=stage, seat="synthesizer",
                **ctx.final_params,
            )
        except UpstreamError as exc:
            ctx.emit(CandidateDone(version, stage, model, error=exc))
            raise
        written.append(version)
        ctx.emit(CandidateDone(version, stage, model, completion))
        return completion.text

    # A missed quorum here fails the run, cleanly; drafts come in waves (panel.early_stop).
    drafts = await round_of(ctx, seats, next(rounds), base, stage="panel", early=True)
    close_round(ctx, drafts, 1)
    history = panel_results(drafts, 1)
    if answers_agree(ctx, drafts):  # extractable drafts that agree: nothing to critique or vote on
        best = agreeing_draft(drafts.answers, ctx.question)
        yield Progress("consensus", f"Drafts: {len(drafts.answers)} of {len(seats)} answered and agree.")
        result = Consensus(best.completion.text, True, "drafts_agree", drafts)
        yield Outcome(drafts, history, answer=result.text, summary=result.summary() | {"answer_from": best.seat.name})
        return
    voters = [a.seat for a in drafts.answers]
    mapped = _CandidateMap(ctx, drafts)  # the live view: candidates on the drafts' map
    order = list(drafts.answers)
    ctx.rng.shuffle(order)
    anonymized = [{"label": label, "text": a.completion.text}
                  for label, a in zip(make_labels(len(order)), order, strict=True)]
    yield Progress("consensus", f"Drafts: {len(drafts.answers)} of {len(seats)} answered.")
    votes: list[dict[str, dict]] = []
    approvals: list[float] = []
    seed = config.revote == "dissenters"
    standing: dict[str, dict] = {}  # dissenters: each seat's latest counted vote
    candidate, stop, reached = None, "max_rounds", False
    try:
        try:
            step()
            critiques = await everyone("critique", ask_all(prompts.CONSENSUS_CRITIQUE, anonymized, voters), voters)
            notes = [a.completion.text for a in critiques.answers]
            ctx.emit(RoundDone(2, clusters=[[a.seat.name for a in critiques.answers]]))
        except QuorumError:
            notes = []  # write the candidate from the drafts alone
        yield Progress("consensus", f"Critiques: {len(notes)}.")
        vote = panel_vote([a.completion.text for a in drafts.answers], ctx.question)  # the drafts' extractable answers
        data = {"drafts": anonymized, "critiques": notes, **({"drafts_vote": vote} if vote else {})}
        candidate = await synthesizer(prompts.CONSENSUS_CANDIDATE, data,
                                      "candidate")
        asked = voters
        for round_no in range(1, config.max_rounds + 1):
            step()
            ballot = await everyone("vote", ask_all(prompts.CONSENSUS_VOTE_SCORED if seed else prompts.CONSENSUS_VOTE,
                                                    {"candidate": candidate}, asked), asked,
                                    quorum=min(ctx.quorum, len(asked)))
            if seed:
                cast = {a.seat.name: v for a in ballot.answers if (v := parse_scored_vote(a.completion.text))}
                standing.update(cast)
                counted = standing
            else:
                cast = counted = {a.seat.name: parse_vote(a.completion.text) for a in ballot.answers}
            votes.append(cast)
            accepted = sum(v["accept"] for v in counted.values())
            pool = len(counted) if seed else len(voters)
            needed = pool if config.strict_unanimity else pool // 2 + 1
            share = round(accepted / max(1, len(counted)), 4)
            approvals.append(share)
            split = [[n for n, v in counted.items() if v["accept"]], [n for n, v in counted.items() if not v["accept"]]]
            marks = ballots({a.seat.name: cast.get(a.seat.name) for a in ballot.answers}, standing if seed else None)
            mapped.close(RoundDone(2 + round_no, agreement=share, clusters=split, votes=marks,
                                   vote={"answer": "accept", "share": share}, candidate=len(written)), candidate)
            yield Progress("consensus", f"Vote {round_no}: {accepted} of {len(counted)} accept (need {needed})"
                                        + (f", {len(ballot.answers) - len(cast)} unreadable vote(s) skipped." if seed
                                           else "."))
            if accepted >= needed and (not seed or len(counted) >= ctx.quorum):
                stop, reached = "consensus", True
                break
            if config.max_total_tokens and ctx.tokens_used() >= config.max_total_tokens:
                stop = "token_budget_exceeded"
                break
            if round_no == config.max_rounds:
                break
            objections = [i for v in counted.values() if not (settled(v) if seed else v["accept"])
                          for i in ((v.get("blocking") or []) + [v["objection"]]) if i]
            candidate = await synthesizer(
                prompts.CONSENSUS_REVISE, {"candidate": candidate, "objections": objections}, "revise"
            )
            if seed:  # only the unconvinced vote again; the others' votes stand
                asked = [s for s in voters if s.name not in standing or not settled(standing[s.name])]
    except (QuorumError, UpstreamError) as exc:
        stop = f"stopped: {exc.describe() if isinstance(exc, UpstreamError) else 'vote quorum lost'}"
        yield Progress("consensus", f"Consensus loop ended early ({stop}).")
    except _Capped:
        stop = "cost_cap_reached"
        yield Progress("consensus", "Consensus loop ended early: the cost cap is spent.")
    source = None if candidate is not None else drafts.answers[0].seat.name
    text = candidate if candidate is not None else drafts.answers[0].completion.text
    if seed and not reached and votes and not wants_json(ctx.req.final_params):
        text += disagreement(standing, len(votes), max(approvals))
    result = Consensus(text, reached, stop, drafts, votes, approvals, best_of_rounds=seed)
    yield Outcome(drafts, history, answer=result.text, answer_source=source, summary=result.summary())
