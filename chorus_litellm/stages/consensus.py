"""Consensus protocol: draft -> critique -> candidate -> vote -> revise, up to max_rounds.

Every seat drafts; every seat critiques the anonymized drafts; the synthesizer writes one
candidate; every seat votes on it as strict JSON; a majority (or, with
`strict_unanimity`, every voter) accepting ends the loop, otherwise the synthesizer
revises against the objections. An unparseable vote counts as a rejection with the
objection "invalid vote". Yields `Progress` per phase, then one `Consensus`.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..adapters.llm import Completer
from ..config import AggregatorConfig, DebateConfig, PanelConfig
from ..types import Completion, Message, Panel, Progress, Seat
from . import prompts
from .judge import make_labels
from .panel import convene, seat_messages


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
        body = text.strip().removeprefix("```json").removesuffix("```").strip()
        data = json.loads(body[body.find("{"): body.rfind("}") + 1])
        return {"accept": bool(data["accept"]) if isinstance(data["accept"], bool) else False,
                "objection": str(data.get("objection") or "")[:1000]}
    except (ValueError, KeyError, TypeError):
        return {"accept": False, "objection": "invalid vote"}


async def run(
    completer: Completer,
    seats: list[Seat],
    messages: list[Message],
    config: DebateConfig,
    panel: PanelConfig,
    aggregator: AggregatorConfig,
    *,
    personas: dict[str, str],
    quorum: int,
    params: dict[str, Any],
    rng: random.Random,
    tokens_used: Callable[[], int],
    record: Callable[[str, str, Completion], None],
) -> AsyncIterator[Progress | Consensus]:
    base = {s.name: messages for s in seats} | seat_messages(seats, messages, personas)

    async def everyone(phase: str, per_seat: dict[str, list[Message]], among: list[Seat]) -> Panel:
        result = await convene(completer, panel, among, messages, quorum=quorum, params=params,
                               per_seat=per_seat)
        for answer in result.answers:
            record(phase, answer.seat.name, answer.completion)
        return result

    def ask_all(instructions: str, data: object, among: list[Seat]) -> dict[str, list[Message]]:
        user = f"{instructions}\n\n{prompts.json_data(data)}"
        return {s.name: [*base[s.name], {"role": "user", "content": user}] for s in among}

    async def synthesizer(instructions: str, data: object, phase: str) -> str:
        completion = await completer.complete(
            aggregator.synthesizer, prompts.with_context(messages, instructions, prompts.json_data(data)),
            timeout=aggregator.synthesis_timeout_s, **params,
        )
        record(phase, "synthesizer", completion)
        return completion.text

    drafts = await everyone("panel", base, seats)
    voters = [a.seat for a in drafts.answers]
    order = list(drafts.answers)
    rng.shuffle(order)
    anonymized = [{"label": label, "text": a.completion.text}
                  for label, a in zip(make_labels(len(order)), order, strict=True)]
    yield Progress("consensus", f"Drafts: {len(drafts.answers)} of {len(seats)} answered.")
    critiques = await everyone("critique", ask_all(prompts.CONSENSUS_CRITIQUE, anonymized, voters), voters)
    yield Progress("consensus", f"Critiques: {len(critiques.answers)}.")
    candidate = await synthesizer(
        prompts.CONSENSUS_CANDIDATE,
        {"drafts": anonymized, "critiques": [a.completion.text for a in critiques.answers]},
        "candidate",
    )
    votes: list[dict[str, dict]] = []
    stop, reached = "max_rounds", False
    for round_no in range(1, config.max_rounds + 1):
        ballot = await everyone("vote", ask_all(prompts.CONSENSUS_VOTE, {"candidate": candidate}, voters), voters)
        cast = {a.seat.name: parse_vote(a.completion.text) for a in ballot.answers}
        votes.append(cast)
        accepted = sum(v["accept"] for v in cast.values())
        needed = len(voters) if config.strict_unanimity else len(voters) // 2 + 1
        yield Progress("consensus", f"Vote {round_no}: {accepted} of {len(cast)} accept (need {needed}).")
        if accepted >= needed:
            stop, reached = "consensus", True
            break
        if config.max_total_tokens and tokens_used() >= config.max_total_tokens:
            stop = "token_budget_exceeded"
            break
        if round_no == config.max_rounds:
            break
        objections = [v["objection"] for v in cast.values() if not v["accept"] and v["objection"]]
        candidate = await synthesizer(
            prompts.CONSENSUS_REVISE, {"candidate": candidate, "objections": objections}, "revise"
        )
    yield Consensus(candidate, reached, stop, drafts, votes)
