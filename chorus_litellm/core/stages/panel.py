"""Panel fan-out: every seat answers the whole conversation in parallel.

A failed seat is a `PanelFailure` value. Once `quorum` seats have answered, the rest get
min(`grace_s`, `grace_ratio` x the time the quorum took) more and are then cancelled; if
the quorum can no longer be met the remaining calls are cancelled at once and
`QuorumError` lists every failure. Cancelling the caller (client disconnect) cancels
every outstanding call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from ..config import PanelConfig
from ..errors import QuorumError, UpstreamError
from ..events import Answered, EarlyStop, Progress, RoundDone, RoundStarted
from ..ports import Completer
from ..types import (
    DeliberationSummary,
    EarlyStopSummary,
    Message,
    Outcome,
    Panel,
    PanelAnswer,
    PanelFailure,
    Seat,
    SeatResult,
)
from . import atlas, budget, extract, prompts

if TYPE_CHECKING:
    from ..context import RunContext


def seats(config: PanelConfig) -> list[Seat]:
    """The panel's seats. Self-MoA spreads temperatures evenly over its range."""
    if config.self_moa:
        moa = config.self_moa
        step = (moa.temperature_max - moa.temperature_min) / (moa.samples - 1)
        return [
            Seat(f"{moa.model}#{i + 1}", moa.model, round(moa.temperature_min + i * step, 3), payee=moa.payee)
            for i in range(moa.samples)
        ]
    counts = Counter(m.model for m in config.members)
    seen: Counter[str] = Counter()
    result = []
    for member in config.members:
        seen[member.model] += 1
        name = member.name or (
            f"{member.model}#{seen[member.model]}" if counts[member.model] > 1 else member.model
        )
        result.append(Seat(name, member.model, member.temperature, member.persona, member.payee))
    return result


async def deliberate(ctx: RunContext) -> AsyncGenerator[Progress | Outcome, None]:
    """The `moa` protocol: every seat answers once per layer (`aggregator.layers`, default
    one). A later layer shows each seat the previous layer's answers, shuffled and
    unattributed, as references; the judge and synthesis work on the last layer. Layer 1
    is asked in waves under `panel.early_stop`; where answers are extractable, a layer
    whose answers agree (`debate.answer_agreement`) is the last one asked."""
    layers = ctx.profile.aggregator.layers
    own = ctx.seat_messages()
    per_seat, stop, stats = own, None, []
    history: list[SeatResult] = []
    maps = RoundMaps(ctx)  # one map for every layer
    for layer in range(1, layers + 1):
        if layer > 1 and budget.over_cap(ctx):
            stop, layers = "cost_cap_reached", layer - 1
            yield Progress("panel", f"Cost cap reached: layer {layer} not asked.")
            break
        if layer > 1:
            yield Progress("panel", f"Layer {layer} of {layers}: the panel reads layer {layer - 1}'s answers.")
        result = await round_of(ctx, ctx.seats, layer, per_seat, early=layer == 1)
        maps.close(result, layer)
        history += results(result, layer)
        stats.append({"round": layer, **answer_measure(ctx, result)})
        if layer < layers and answers_agree(ctx, result):
            stop, layers = "answers_agree", layer
            yield Progress("panel", f"Layer {layer}'s answers agree: no further layer asked.")
            break
        references = [a.completion.text for a in result.answers]
        ctx.rng.shuffle(references)  # completion order says who was fast; drop it
        per_seat = {name: [*messages, {"role": "user", "content": prompts.layer_user(references)}]
                    for name, messages in own.items()}
    summary: DeliberationSummary | None = ({"rounds": layers, "stop_reason": stop, "layers": layers,
                                            "answer_agreement_by_layer": stats}
               if layers > 1 or stop else None)
    yield Outcome(result, tuple(history), summary=summary)


def answers_agree(ctx: RunContext, panel: Panel) -> bool:
    """The round's answers are extractable and agree (`debate.answer_agreement`), or a
    first wave settled the vote."""
    agreement = answer_measure(ctx, panel)["answer_agreement"]
    return bool(panel.saved) or (agreement is not None and agreement >= ctx.preset.answer_agreement)


def results(panel: Panel, round_no: int, echoes: dict[str, str] | None = None) -> tuple[SeatResult, ...]:
    """Every seat's result in one round: answers (with the watchdog's verdict) and failures."""
    echoes = echoes or {}
    return (
        *(SeatResult(a.seat, round_no, a.completion.text, echo=echoes.get(a.seat.name)) for a in panel.answers),
        *(SeatResult(f.seat, round_no, failure=f) for f in panel.failures),
    )


async def _ask(
    completer: Completer, seat: Seat, messages: list[Message], timeout_s: float, params: dict[str, Any],
    stage: str,
) -> PanelAnswer | PanelFailure:
    started = time.perf_counter()
    call_params = dict(params)
    if seat.temperature is not None:
        call_params["temperature"] = seat.temperature
    if "web_search_options" in call_params and not completer.supports_web_search(seat.model):
        del call_params["web_search_options"]  # panel.web_search: only where the model can search
    try:
        completion = await completer.complete(seat.model, messages, timeout=timeout_s, stage=stage, seat=seat.name,
                                              **call_params)
    except UpstreamError as exc:
        return PanelFailure(seat, exc.kind, str(exc), exc.status, time.perf_counter() - started)
    if not completion.text.strip():
        return PanelFailure(seat, "empty", "the answer was empty", None, completion.latency_s)
    return PanelAnswer(seat, completion)


async def fan_out(
    completer: Completer,
    panel_seats: list[Seat],
    messages: list[Message],
    *,
    quorum: int,
    timeout_s: float,
    grace_s: float,
    params: dict[str, Any],
    grace_ratio: float = float("inf"),
    per_seat: dict[str, list[Message]] | None = None,
    on_result: Callable[[PanelAnswer | PanelFailure], None] | None = None,
    stage: str = "panel",
    first_wave: int | None = None,
    settled: Callable[[list[PanelAnswer], int], bool] | None = None,
) -> Panel:
    """`per_seat` gives some seats their own messages (personas, debate rounds);
    `on_result` sees each answer or failure as it arrives (the event log; the debate
    starts embedding answers). With `first_wave`, only that many seats are asked first;
    once they have all ended, the rest are asked unless `settled(answers, seats left)`
    says no remaining seat can change the outcome (then they are `Panel.saved`)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    per_seat = per_seat or {}
    tasks: dict[asyncio.Task, Seat] = {}

    def ask(among: list[Seat]) -> set[asyncio.Task]:
        new = {asyncio.create_task(_ask(completer, seat, per_seat.get(seat.name, messages), timeout_s, params,
                                        stage)): seat for seat in among}
        tasks.update(new)
        return set(new)

    wave = first_wave if first_wave is not None and settled is not None else len(panel_seats)
    held, saved = list(panel_seats[wave:]), []
    answers: list[PanelAnswer] = []
    failures: list[PanelFailure] = []
    order = {seat.name: i for i, seat in enumerate(panel_seats)}
    pending = ask(list(panel_seats[:wave]))
    grace_until: float | None = None
    try:
        while pending or held:
            if not pending:  # the first wave has ended: settled, or ask the rest now
                if len(answers) >= quorum and settled is not None and settled(answers, len(held)):
                    saved, held = held, []
                    break
                pending, held = ask(held), []
                continue
            wait_for = None if grace_until is None else max(0.0, grace_until - loop.time())
            done, pending = await asyncio.wait(pending, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break  # grace expired
            for task in sorted(done, key=lambda t: order[tasks[t].name]):  # stable, not set order
                result = task.result()
                (answers if isinstance(result, PanelAnswer) else failures).append(result)
                if on_result is not None:
                    on_result(result)
            if grace_until is None and not held and len(answers) >= quorum:
                now = loop.time()
                grace_s = min(grace_s, grace_ratio * (now - started))
                grace_until = now + grace_s
            if len(answers) + len(pending) + len(held) < quorum:
                break  # the quorum can no longer be met
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    reason = (
        f"still running {grace_s:.3g}s after the quorum answered"
        if len(answers) >= quorum
        else "cancelled: the quorum could no longer be met"
    )
    cut = [PanelFailure(tasks[t], "cancelled", reason) for t in sorted(pending, key=lambda t: order[tasks[t].name])]
    if on_result is not None:
        for failure in cut:
            on_result(failure)
    failures += cut
    failures.sort(key=lambda f: order[f.seat.name])
    if len(answers) < quorum:
        detail = "; ".join(f.describe() for f in failures)
        raise QuorumError(
            f"panel quorum not met: {len(answers)} of {len(panel_seats)} members answered, "
            f"{quorum} required. Failed: {detail}",
            tuple(failures), tuple(answers), quorum,
        )
    # Answers stay in completion order here; the judge shuffles labels before anyone sees them.
    return Panel(tuple(answers), tuple(failures), tuple(saved))


async def convene(
    completer: Completer,
    config: PanelConfig,
    panel_seats: list[Seat],
    messages: list[Message],
    *,
    quorum: int,
    params: dict[str, Any],
    per_seat: dict[str, list[Message]] | None = None,
    on_result: Callable[[PanelAnswer | PanelFailure], None] | None = None,
    stage: str = "panel",
    question: str | None = None,
) -> Panel:
    """`fan_out` with the profile's deadlines and grace; given the `question`, round 1
    in waves as `panel.early_stop` says."""
    wave = first_wave(config, len(panel_seats), question) if question is not None else None
    return await fan_out(
        completer, panel_seats, messages, quorum=quorum, timeout_s=config.timeout_s,
        grace_s=config.quorum_grace_s, grace_ratio=config.quorum_grace_ratio, params=params,
        per_seat=per_seat, on_result=on_result, stage=stage, first_wave=wave,
        settled=(lambda answers, left: vote_settled(answers, left, question or "")) if wave else None,
    )


def first_wave(config: PanelConfig, seats: int, question: str) -> int | None:
    """How many seats round 1 asks first, or None (all at once): `panel.early_stop`."""
    mode = config.early_stop.mode
    if mode == "off" or (mode == "auto" and extract.question_form(question) is None):
        return None
    wave = config.early_stop.first_wave or seats // 2 + 1
    return wave if wave < seats else None


def vote_settled(answers: list[PanelAnswer], left: int, question: str) -> bool:
    """The first wave's answers are extractable and `left` more seats cannot overtake
    (or tie) the leading answer."""
    result = extract.tally_texts([a.completion.text for a in answers], question)
    return result.extractable and result.settled(left)


async def round_of(ctx: RunContext, among: list[Seat], round_no: int, per_seat: dict[str, list[Message]], *,
                   stage: str = "panel", on_answer: Callable[[PanelAnswer], None] | None = None,
                   quorum: int | None = None, early: bool = False) -> Panel:
    """One round of the run's panel, on the event log: announced, then every answer and
    failure as it arrives (`on_answer` sees the answers too). `quorum` defaults to the
    run's (a re-vote of a few seats needs fewer). `early`: round 1 of a protocol, asked in
    waves under `panel.early_stop`; the seats it saved are counted on the run's report."""
    ctx.emit(RoundStarted(round_no, stage, [s.name for s in among]))

    def seen(result: PanelAnswer | PanelFailure) -> None:
        ctx.emit(Answered(result, round_no))
        if on_answer is not None and isinstance(result, PanelAnswer):
            on_answer(result)

    result = await convene(ctx.completer, ctx.panel, among, ctx.messages,
                           quorum=ctx.quorum if quorum is None else quorum, params=ctx.draft_params,
                           per_seat=per_seat, on_result=seen, stage=stage, question=ctx.question if early else None)
    if early and first_wave(ctx.panel, len(among), ctx.question):
        ctx.report.early_stop = summary = early_stop_summary(result, len(among))
        ctx.emit(EarlyStop(round_no, summary))
    return result


def early_stop_summary(result: Panel, seats: int) -> EarlyStopSummary:
    """Seats asked and saved by the first wave, and what the saved ones would have cost
    (the mean cost of the answers that came back, per seat)."""
    asked = seats - len(result.saved)
    paid = [a.completion.cost for a in result.answers]
    mean = sum(paid) / len(paid) if paid else 0.0
    return {"asked": asked, "saved": len(result.saved), "saved_seats": [s.name for s in result.saved],
            "cost_saved_usd": round(mean * len(result.saved), 8)}


class RoundMaps:
    """`round_done` for the one-shot rounds of one run (moa's layers, consensus drafts): at
    once, or with its map when a viewer renders it. One `atlas.Atlas` for the run, so
    every layer is drawn in round 1's projection and earlier points never move; each round
    is embedded off the critical path (`ctx.spawn`), and joins the atlas in round order."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.space = ctx, atlas.Atlas(ctx.preset.link)
        self.last: asyncio.Future | None = None  # the previous round's map, still being measured

    def close(self, panel: Panel, round_no: int) -> None:
        if self.ctx.watched:
            self.last = asyncio.ensure_future(self._mapped(panel, round_no, self.last))
            self.ctx.spawn(self.last)
        else:
            self.ctx.emit(RoundDone(round_no, clusters=[[a.seat.name for a in panel.answers]],
                                    **answer_measure(self.ctx, panel)))

    async def _mapped(self, panel: Panel, round_no: int, previous: asyncio.Future | None) -> None:
        ctx, answers = self.ctx, panel.answers
        done: dict[str, Any] = {"clusters": [[a.seat.name for a in answers]], **answer_measure(ctx, panel)}
        if ctx.embedder is not None and len(answers) > 0:
            vectors = await ctx.embedder.encode([a.completion.text for a in answers])
            if previous is not None:
                await asyncio.wait([previous])  # the earlier round first: round 1 fits the projection
            names = [a.seat.name for a in answers]
            lay = atlas.layout(vectors, list(range(len(answers))), link=ctx.preset.link)
            done.update(agreement=round(lay.agreement, 4), clusters=[[names[i] for i in c] for c in lay.clusters],
                        consensus=names[lay.consensus], dissent=None if lay.dissent is None else names[lay.dissent],
                        **self.space.add(round_no, names, vectors, lay))
        elif previous is not None:
            await asyncio.wait([previous])
        ctx.emit(RoundDone(round_no, **done))


def close_round(ctx: RunContext, panel: Panel, round_no: int) -> None:
    """`round_done` for a run's only one-shot round (consensus drafts): see `RoundMaps`."""
    RoundMaps(ctx).close(panel, round_no)


def answer_measure(ctx: RunContext, panel: Panel) -> dict[str, Any]:
    """A round's vote and answer agreement (the leader's share of all its answers), both
    None when its answers are open-ended."""
    count = extract.tally_texts([a.completion.text for a in panel.answers], ctx.question)
    if not count.extractable:
        return {"answer_agreement": None, "vote": None}
    return {"answer_agreement": round(count.agreement, 4),
            "vote": {"answer": count.answer, "share": round(count.share, 4)}}
