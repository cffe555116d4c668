"""Consensus protocol: draft -> critique -> candidate -> vote -> revise, up to max_rounds.

Every seat drafts; every seat critiques the anonymized drafts; the synthesizer writes one
candidate; every seat votes on it as strict JSON; a majority (or, with
`strict_unanimity`, every voter) accepting ends the loop, otherwise the synthesizer
revises against the objections. An unparseable vote counts as a rejection with the
objection "invalid vote". Yields `Progress` per phase, then one `Outcome` whose answer
is the last candidate (judge and synthesis are not run again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import runlog
from ..errors import QuorumError, UpstreamError
from ..types import Message, Outcome, Panel, Progress, Seat
from . import prompts
from .extract import panel_vote
from .jsonout import json_object
from .judge import make_labels
from .panel import close_round, round_of
from .panel import results as panel_results

if TYPE_CHECKING:
    from ..context import RunContext


@dataclass
class Consensus:
    text: str
    reached: bool
    stop_reason: str
    drafts: Panel
    votes: list[dict[str, dict]] = field(default_factory=list)  # per round: seat -> vote

    @property
    def confidence(self) -> float:
        if not self.votes:
            return 0.0
        last = self.votes[-1]
        return sum(v["accept"] for v in last.values()) / max(1, len(last))

    def summary(self) -> dict[str, Any]:
        return {"rounds": len(self.votes), "stop_reason": self.stop_reason, "reached": self.reached,
                "consensus_confidence": round(self.confidence, 4), "votes": self.votes,
                "token_budget_exceeded": self.stop_reason == "token_budget_exceeded"}


def parse_vote(text: str) -> dict:
    try:
        data = json_object(text)
        return {"accept": bool(data["accept"]) if isinstance(data["accept"], bool) else False,
                "objection": str(data.get("objection") or "")[:1000]}
    except (ValueError, KeyError, TypeError):
        return {"accept": False, "objection": "invalid vote"}


async def deliberate(ctx: RunContext) -> AsyncIterator[Progress | Outcome]:
    """The `consensus` protocol (module docstring). The synthesizer writes with the final
    answer's params (the client's max_tokens, stop, response_format), not the drafts'.
    Once drafts exist, nothing fails the run: a lost quorum or a failed synthesizer call
    ends the loop with the latest candidate, or the first draft if there is none."""
    config, seats = ctx.preset, ctx.seats
    base = ctx.seat_messages()

    rounds = iter(range(1, 3 + config.max_rounds))  # drafts, critiques, then one per vote

    async def everyone(stage: str, per_seat: dict[str, list[Message]], among: list[Seat]) -> Panel:
        return await round_of(ctx, among, next(rounds), per_seat, stage=stage)

    def ask_all(instructions: str, data: object, among: list[Seat]) -> dict[str, list[Message]]:
        user = f"{instructions}\n\n{prompts.json_data(data)}"
        return {s.name: [*base[s.name], {"role": "user", "content": user}] for s in among}

    async def synthesizer(instructions: str, data: object, stage: str) -> str:
        completion = await ctx.completer.complete(
            ctx.profile.aggregator.synthesizer,
            prompts.with_context(ctx.messages, instructions, prompts.json_data(data)),
            timeout=ctx.profile.aggregator.synthesis_timeout_s, stage=stage, seat="synthesizer",
            **ctx.final_params,
        )
        return completion.text

    drafts = await everyone("panel", base, seats)  # a missed quorum here fails the run, cleanly
    close_round(ctx, drafts, 1)
    history = panel_results(drafts, 1)
    voters = [a.seat for a in drafts.answers]
    order = list(drafts.answers)
    ctx.rng.shuffle(order)
    anonymized = [{"label": label, "text": a.completion.text}
                  for label, a in zip(make_labels(len(order)), order, strict=True)]
    yield Progress("consensus", f"Drafts: {len(drafts.answers)} of {len(seats)} answered.")
    votes: list[dict[str, dict]] = []
    candidate, stop, reached = None, "max_rounds", False
    try:
        try:
            critiques = await everyone("critique", ask_all(prompts.CONSENSUS_CRITIQUE, anonymized, voters), voters)
            notes = [a.completion.text for a in critiques.answers]
            ctx.emit("round_done", **runlog.round_done(round=2, clusters=[[a.seat.name for a in critiques.answers]]))
        except QuorumError:
            notes = []  # write the candidate from the drafts alone
        yield Progress("consensus", f"Critiques: {len(notes)}.")
        vote = panel_vote([a.completion.text for a in drafts.answers])  # the drafts' extractable answers
        data = {"drafts": anonymized, "critiques": notes, **({"drafts_vote": vote} if vote else {})}
        candidate = await synthesizer(prompts.CONSENSUS_CANDIDATE, data,
                                      "candidate")
        for round_no in range(1, config.max_rounds + 1):
            ballot = await everyone("vote", ask_all(prompts.CONSENSUS_VOTE, {"candidate": candidate}, voters), voters)
            cast = {a.seat.name: parse_vote(a.completion.text) for a in ballot.answers}
            votes.append(cast)
            accepted = sum(v["accept"] for v in cast.values())
            needed = len(voters) if config.strict_unanimity else len(voters) // 2 + 1
            share = round(accepted / max(1, len(cast)), 4)
            split = [[n for n, v in cast.items() if v["accept"]], [n for n, v in cast.items() if not v["accept"]]]
            ctx.emit("round_done", **runlog.round_done(round=2 + round_no, agreement=share, clusters=split,
                                                       vote={"answer": "accept", "share": share}))
            yield Progress("consensus", f"Vote {round_no}: {accepted} of {len(cast)} accept (need {needed}).")
            if accepted >= needed:
                stop, reached = "consensus", True
                break
            if config.max_total_tokens and ctx.tokens_used() >= config.max_total_tokens:
                stop = "token_budget_exceeded"
                break
            if round_no == config.max_rounds:
                break
            objections = [v["objection"] for v in cast.values() if not v["accept"] and v["objection"]]
            candidate = await synthesizer(
                prompts.CONSENSUS_REVISE, {"candidate": candidate, "objections": objections}, "revise"
            )
    except (QuorumError, UpstreamError) as exc:
        stop = f"stopped: {exc.describe() if isinstance(exc, UpstreamError) else 'vote quorum lost'}"
        yield Progress("consensus", f"Consensus loop ended early ({stop}).")
    source = None if candidate is not None else drafts.answers[0].seat.name
    result = Consensus(candidate if candidate is not None else drafts.answers[0].completion.text,
                       reached, stop, drafts, votes)
    yield Outcome(drafts, history, answer=result.text, answer_source=source, summary=result.summary())
