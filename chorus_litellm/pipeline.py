"""The whole fusion request, top to bottom.

    gate -> (forward to one model)
         | deliberate (moa: one panel round | debate: rounds in embedding space
                       | consensus: draft, critique, vote, revise)
           -> judge -> streamed synthesis -> report

`run()` yields Events: `Progress` (stage and round updates), `Delta` (answer text, as the
synthesizer writes it), `Forward` (the gate chose one model: the provider relays that
model's own response untouched), and finally `Done` with the `RunReport`. The
non-streaming path collects the same events. Everything here talks to models only
through the `Completer` (and, for debates, the `Embedder`) it is given.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from .adapters.embeddings import Embedder
from .adapters.llm import Completer, DefaultParams
from .report import RunReport
from .request import FusionRequest, prompt_text
from .stages import consensus, debate, judge, panel, router, synthesis
from .stages.prompts import PERSONAS
from .types import Delta, Done, Message, Progress, Route, Seat, Synthesis


@dataclass(frozen=True)
class Forward:
    """The gate sent this request to one model; the provider relays it as it is."""

    model: str
    report: RunReport


async def run(
    req: FusionRequest,
    completer: Completer,
    rng: random.Random | None = None,
    embedder: Embedder | None = None,
    finishers: Sequence[Callable[[RunReport, FusionRequest], Awaitable[None]]] = (),
    seats: list[Seat] | None = None,
) -> AsyncIterator:
    """`finishers` run in order once the answer is complete, before `Done`: settlement
    (receipt stored before the response completes), then the transcript."""
    profile, preset = req.profile, req.debate
    report = RunReport(req.debate_id, req.profile_name, req.caller, protocol=preset.protocol)
    started = time.perf_counter()
    finish = partial(_finish, report, req, started, finishers)
    rng = rng or random.Random()
    clock = time.perf_counter

    # 1) Gate: tool turns and easy prompts go to single_model unchanged.
    if req.forward_reason:
        route = Route("single", req.options.policy or profile.router.policy, req.forward_reason)
    else:
        route, classifier_call = await router.decide(
            profile.router, req.options.policy, req.messages, prompt_text(req.messages), completer
        )
        report.add("classifier", "classifier", classifier_call)
    report.route = route
    report.timings["gate"] = clock() - started
    if route.decision == "single":
        yield Forward(profile.router.single_model or "", report)
        return
    if preset.max_retries is not None:  # LiteLLM's Router retries transient errors with backoff
        completer = DefaultParams(completer, num_retries=preset.max_retries)

    # 2) Deliberate. No event goes out before round 1's quorum is known, so a missed
    #    quorum is a clean HTTP error even for streaming clients.
    seats = seats or panel.seats(profile.panel)  # the provider may order them by reputation
    personas = {**PERSONAS, **profile.personas}
    draft_params = dict(req.sampling)
    if profile.panel.max_tokens:
        draft_params["max_tokens"] = profile.panel.max_tokens
    common = dict(personas=personas, quorum=req.quorum, params=draft_params,
                  tokens_used=lambda: report.usage.total_tokens)
    t = clock()
    minority: list[str] = []
    if preset.protocol == "consensus":
        result = None
        async for item in consensus.run(
            completer, seats, req.messages, preset, profile.panel, profile.aggregator, rng=rng,
            record=report.add, **common,
        ):
            if isinstance(item, Progress):
                yield item
            else:
                result = item
        report.panel, report.deliberation = result.drafts, result.summary()
        report.timings["consensus"] = clock() - t
        async for event in finish(result.text):
            yield event
        return
    if preset.protocol == "debate":
        result = None
        async for item in debate.run(
            completer, embedder, seats, req.messages, _question(req.messages), preset, profile.panel,
            record=report.add_round,
            **common,
        ):
            if isinstance(item, Progress):
                yield item
            else:
                result = item
        report.deliberation, report.transcript = result.summary(), result.transcript()
        report.timings["debate"] = clock() - t
        panel_result, minority = result.final, result.minority
        if result.budget_exceeded:  # stop early: the last round's consensus voice stands
            report.panel = panel_result
            async for event in finish(result.best.completion.text, source=result.best.seat.name):
                yield event
            return
    else:
        panel_result = await panel.convene(
            completer, profile.panel, seats, req.messages, quorum=req.quorum, params=draft_params,
            per_seat=panel.seat_messages(seats, req.messages, personas),
        )
        for answer in panel_result.answers:
            report.add("panel", answer.seat.name, answer.completion)
    report.panel = panel_result
    report.timings["panel"] = clock() - t
    failed = "".join(f"; {f.seat.name} {f.kind}" for f in panel_result.failures)
    yield Progress("panel", f"Panel: {len(panel_result.answers)} of {len(seats)} answered{failed}.")

    # 3) Judge: anonymized, length-normalized structured analysis (minority flagged).
    t = clock()
    verdict = await judge.analyze(completer, profile.aggregator, req.messages, panel_result.answers, rng,
                                  minority=minority)
    report.verdict = verdict
    report.timings["judge"] = clock() - t
    for call in verdict.completions:
        report.add("judge", "judge", call)
    yield Progress("judge", "Judge analysis degraded: " + verdict.error if verdict.degraded else "Judge analysis done.")

    # 4) Synthesis, streamed to streaming clients; the client's max_tokens/stop apply
    #    here and only here.
    t = clock()
    async for piece in synthesis.write(
        completer, profile.aggregator, req.messages, verdict, panel_result.answers,
        {**req.sampling, **req.final_params}, stream=req.stream,
    ):
        if isinstance(piece, Synthesis):
            report.synthesis = piece
            report.add("synthesis", "synthesizer", piece.completion)
        else:
            yield Delta(piece)
    report.timings["synthesis"] = clock() - t
    async for event in finish(None):
        yield event


async def _finish(report: RunReport, req: FusionRequest, started: float, finishers, text: str | None,
                  source: str | None = None) -> AsyncIterator:
    """The end of every path: a final answer not written by the synthesizer, 5) settle
    and persist (the finishers), the debug summary, and Done."""
    if text is not None:
        report.synthesis = Synthesis(text, None, fallback=source is not None, fallback_source=source)
        yield Delta(text)
    for finisher in finishers:
        await finisher(report, req)
    if req.debate.output_mode == "debug":
        yield Delta("\n\n---\n" + report.debug_text())
    report.timings["total"] = time.perf_counter() - started
    yield Done(report)


def _question(messages: list[Message]) -> str:
    """The last user turn: what the echo watchdog compares answers against."""
    last = next(m for m in reversed(messages) if m.get("role") == "user")
    return prompt_text([last])
