"""The `council` protocol (llm-council's middle stage): every member answers, then ranks the
other members' anonymized answers; the ranks, summed by Borda count, reach the synthesizer
with the answers in place of the judge's analysis.

Round 1 (`panel`): the panel answers, as in `moa` (early stop included).
Rounds 2 and 3 (`rank`): each member that answered sees the others' answers as DATA under
labels shuffled for it, and replies with a JSON ranking, best first; round 3 shows it the
same labels in reverse order, so an answer's position cancels out (one order alone flips
45-66% of LLM pairwise judgements when it is swapped). A member never ranks its own answer.

Borda: a ballot over k answers gives the one ranked at position p (from 0) k - 1 - p
points, an answer it left out none; an answer's points are its mean over the ballots that
could rank it (a seat that answered late is not penalized for being shown less). An
unreadable ballot is skipped and counted. The Outcome carries a `Verdict` built from the
ranking (its best: the top answer; its raw form: the labelled ranking the synthesizer
reads), so the pipeline calls no judge; settlement takes impact from the points
(settlement/finish.py). With no readable ballot at all, the Outcome has no verdict and the judge runs.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator

from ..context import RunContext
from ..errors import QuorumError
from ..events import Progress, RoundDone
from ..types import Analysis, Completion, DeliberationSummary, Message, Outcome, Panel, PanelAnswer, Verdict
from . import prompts
from .judge import LABEL_LIST, label_answers, make_labels
from .jsonout import json_object
from .panel import results, round_of

RANK_ROUNDS = (2, 3)  # forward, then reversed


async def deliberate(ctx: RunContext) -> AsyncGenerator[Progress | Outcome, None]:
    answered = await round_of(ctx, ctx.seats, 1, ctx.seat_messages(), early=True)
    history = list(results(answered, 1))
    yield Progress("council", f"Panel: {len(answered.answers)} answered; each ranks the others.")
    ballots: list[dict[str, int | None]] = []  # seat -> position (None: left out), per readable ballot
    unreadable = 0
    shown = _views(answered.answers, ctx.rng)
    for round_no in RANK_ROUNDS if len(answered.answers) > 2 else ():
        reverse = round_no == RANK_ROUNDS[1]
        per_seat = {seat: _ballot_request(ctx.conversation, view, reverse) for seat, view in shown.items()}
        rankers = [a.seat for a in answered.answers]
        try:
            ranked = await round_of(ctx, rankers, round_no, per_seat, stage="rank", quorum=1)
        except QuorumError:
            ctx.emit(RoundDone(round_no))
            continue
        history += results(ranked, round_no)
        read = {a.seat.name: _read_ballot(a.completion, shown[a.seat.name]) for a in ranked.answers}
        unreadable += sum(b is None for b in read.values())
        ballots += [b for b in read.values() if b]
        ctx.emit(RoundDone(round_no, clusters=[sorted(s for s, b in read.items() if b)]))
    ranking = borda(ballots, [a.seat.name for a in answered.answers])
    summary: DeliberationSummary = {"rounds": 1 + len(RANK_ROUNDS), "stop_reason": None, "ballots": len(ballots),
               "unreadable_ballots": unreadable, "ranking": ranking}
    if ranking:
        yield Progress("council", "Ranking: " + ", ".join(f"{r['seat']} {r['points']:.2f}" for r in ranking) + ".")
    yield Outcome(answered, tuple(history), summary=summary,
                  verdict=_verdict(ctx, answered, ranking) if ballots else None)


def borda(ballots: list[dict[str, int | None]], seats: list[str]) -> list[dict]:
    """Each answer's mean Borda points over the ballots that could rank it, best first
    (ties by seat order); a ballot is {seat: position} over the answers it was shown,
    None for one it left out."""
    points: dict[str, list[float]] = {s: [] for s in seats}
    for ballot in ballots:
        k = len(ballot)
        for seat, position in ballot.items():
            points[seat].append(0.0 if position is None else float(k - 1 - position))
    ranked = [{"seat": s, "points": round(sum(p) / len(p), 4), "ballots": len(p)} for s, p in points.items() if p]
    return sorted(ranked, key=lambda r: -r["points"])


def _views(answers: tuple[PanelAnswer, ...], rng: random.Random) -> dict[str, list[tuple[str, str, str]]]:
    """Per ranker: the other answers as (label, seat, text), in an order shuffled for it."""
    views = {}
    for me in answers:
        others = [a for a in answers if a.seat.name != me.seat.name]
        rng.shuffle(others)
        views[me.seat.name] = [(label, a.seat.name, a.completion.text)
                               for label, a in zip(make_labels(len(others)), others, strict=True)]
    return views


def _ballot_request(conversation: list[Message], view: list[tuple[str, str, str]], reverse: bool) -> list[Message]:
    shown = list(reversed(view)) if reverse else view
    return prompts.with_context(conversation, prompts.COUNCIL_RANK,
                                prompts.council_user([(label, text) for label, _, text in shown]))


def _read_ballot(reply: Completion, view: list[tuple[str, str, str]]) -> dict[str, int | None] | None:
    """{seat: position or None} from a reply; None when it ranks fewer than two known labels."""
    by_label = {label: seat for label, seat, _ in view}
    try:
        data = json_object(reply.text)
    except ValueError:
        data = None
    listed = data.get("ranking") if isinstance(data, dict) else None
    labels = [str(x).strip().strip("().").upper() for x in listed] if isinstance(listed, list) else \
        LABEL_LIST.findall(reply.text)
    order: list[str] = []
    for label in labels:
        if label in by_label and by_label[label] not in order:
            order.append(by_label[label])
    if len(order) < 2:
        return None
    return {seat: (order.index(seat) if seat in order else None) for seat in by_label.values()}


def _verdict(ctx: RunContext, answered: Panel, ranking: list[dict]) -> Verdict:
    """The ranking as the synthesizer reads it: the answers under fresh labels, and each
    label's points, best first."""
    labels, labelled = label_answers(answered.answers, ctx.profile.aggregator, ctx.rng)
    label_of = {seat: label for label, seat in labels.items()}
    raw = {"method": "each answer ranked by the other panelists, in both orders; Borda points (higher is better)",
           "ranking": [{"answer": label_of[r["seat"]], "points": r["points"]} for r in ranking],
           "best": label_of[ranking[0]["seat"]]}
    return Verdict(Analysis(best=ranking[0]["seat"]), (), labels=labels, labelled=tuple(labelled),
                   raw=raw)
