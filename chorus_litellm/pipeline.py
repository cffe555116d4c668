"""The whole fusion request, top to bottom.

    gate -> (forward to one model) | panel fan-out -> judge -> streamed synthesis -> report

`run()` yields Events: `Progress` (stage updates), `Delta` (answer text, as the
synthesizer writes it), `Forward` (the gate chose one model: the provider relays that
model's own response untouched), and finally `Done` with the `RunReport`. The
non-streaming path collects the same events. Everything here talks to models only
through the `Completer` it is given.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .adapters.llm import Completer
from .report import RunReport
from .request import FusionRequest, prompt_text
from .stages import judge, panel, router, synthesis
from .types import Delta, Done, Progress, Route, Synthesis


@dataclass(frozen=True)
class Forward:
    """The gate sent this request to one model; the provider relays it as it is."""

    model: str
    report: RunReport


async def run(req: FusionRequest, completer: Completer, rng: random.Random | None = None) -> AsyncIterator:
    profile = req.profile
    report = RunReport(req.request_id, req.profile_name, req.caller)
    clock = time.perf_counter
    started = clock()

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

    # 2) Panel: every seat answers the whole conversation in parallel, down to the quorum.
    # No event goes out before the quorum is known, so a missed quorum is a clean HTTP
    # error even for streaming clients (not an error in the middle of a 200 stream).
    seats = panel.seats(profile.panel)
    draft_params = dict(req.sampling)
    if profile.panel.max_tokens:
        draft_params["max_tokens"] = profile.panel.max_tokens
    t = clock()
    result = await panel.fan_out(
        completer, seats, req.messages, quorum=req.quorum, timeout_s=profile.panel.timeout_s,
        grace_s=profile.panel.quorum_grace_s, grace_ratio=profile.panel.quorum_grace_ratio,
        params=draft_params,
    )
    report.panel = result
    report.timings["panel"] = clock() - t
    for answer in result.answers:
        report.add("panel", answer.seat.name, answer.completion)
    failed = "".join(f"; {f.seat.name} {f.kind}" for f in result.failures)
    yield Progress("panel", f"Panel: {len(result.answers)} of {len(seats)} answered{failed}.")

    # 3) Judge: anonymized, length-normalized structured analysis.
    t = clock()
    verdict = await judge.analyze(completer, profile.aggregator, req.messages, result.answers, rng or random.Random())
    report.verdict = verdict
    report.timings["judge"] = clock() - t
    for call in verdict.completions:
        report.add("judge", "judge", call)
    yield Progress("judge", "Judge analysis degraded: " + verdict.error if verdict.degraded else "Judge analysis done.")

    # 4) Synthesis, streamed to streaming clients; the client's max_tokens/stop apply
    #    here and only here.
    t = clock()
    async for piece in synthesis.write(
        completer, profile.aggregator, req.messages, verdict, result.answers,
        {**req.sampling, **req.final_params}, stream=req.stream,
    ):
        if isinstance(piece, Synthesis):
            report.synthesis = piece
            report.add("synthesis", "synthesizer", piece.completion)
        else:
            yield Delta(piece)
    report.timings["synthesis"] = clock() - t
    report.timings["total"] = clock() - started
    yield Done(report)
