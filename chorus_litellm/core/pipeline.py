"""The whole fusion request, top to bottom: one path for every route and protocol.

    gate -> forward to one model
         | seats -> deliberate (moa | debate | consensus | council: one interface, one Outcome)
                 -> judge (council: the members' ranks) -> streamed synthesis
                    (unless the protocol already answered; a lost quorum: panel.on_quorum_failure)
    -> finalize (settle, keep the transcript, count reputation) -> RunDone

`run()` yields typed events (core/events.py), each created once and handed to the run's log
on its way out: the client's `Progress` (stage and round updates), `AnswerDelta` (answer
text as the synthesizer writes it), `Relay` (the forwarded model's own response or
chunks, passed on untouched) and finally `RunDone` with the `RunReport`, and between
them the stage marks (`Routed`, `JudgeDone`, `SynthesisStarted`, ...) that only the log's
subscribers read. Events that happen inside a step (an answer arriving mid-round) are
the stages' own `ctx.emit`. The non-streaming path collects the same events. Every inner
call goes through `ctx.ledger`, which records and charges it the moment it ends and caps
it at the run's deadline; no protocol is named below step 2.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from .context import RunContext
from .errors import BudgetError, DeadlineError, PoolError, QuorumError
from .events import (
    AnswerDelta,
    AnswerReplaced,
    Event,
    JudgeDone,
    Progress,
    QuorumLost,
    Relay,
    Routed,
    RunDone,
    RunFailed,
    RunStarted,
    Seated,
    Settled,
    SynthesisDone,
    SynthesisStarted,
)
from .request import PLUGIN_PARAMS, prompt_text, wants_json
from .stages import (
    budget,
    consensus,
    consult,
    council,
    debate,
    extract,
    guard,
    judge,
    panel,
    prompts,
    router,
    synthesis,
)
from .stages import draw
from .stages import reputation
from .stages.synthesis import is_json
from .types import DeliberationSummary, Outcome, Panel, PanelAnswer, Route, Seat, SeatResult, Synthesis

Deliberation = Callable[[RunContext], AsyncGenerator[Progress | Outcome, None]]
PROTOCOLS: dict[str, Deliberation] = {
    "moa": panel.deliberate, "debate": debate.deliberate, "consensus": consensus.deliberate,
    "council": council.deliberate,
}


async def run(ctx: RunContext) -> AsyncGenerator[Event, None]:
    """The run's events, each handed to its log as it goes: `RunStarted` first, `RunDone`
    or `RunFailed` last."""
    ctx.emit(RunStarted(ctx.req, panel.seats(ctx.panel)))
    ended = False
    try:
        async with aclosing(_run(ctx)) as events:
            async for event in events:
                if isinstance(event, RunDone):
                    await ctx.drain()
                    ended = True
                yield ctx.emit(event)
    except BaseException as exc:  # failed, cancelled or closed by a client that left
        if not ended:
            await ctx.drain(cancel=True)
            ctx.emit(RunFailed(exc, ctx.report.cost, ctx.report.by_stage()))
        raise


async def _run(ctx: RunContext) -> AsyncGenerator[Event, None]:
    req, report = ctx.req, ctx.report
    started = time.perf_counter()
    clock = time.perf_counter

    # 1) Gate: tool turns and easy prompts go to single_model unchanged.
    report.route = await _route(ctx)
    report.timings["gate"] = clock() - started
    yield Routed(report.route)
    if report.route.decision == "single":
        t = clock()
        async with aclosing(_answered(ctx) if ctx.answered else _forward(ctx)) as relayed:
            async for event in relayed:
                yield event
        report.timings["forward"] = clock() - t
    else:  # closed with the run (a client that left cancels the calls in flight)
        async with aclosing(_fuse(ctx)) as steps:
            async for step in steps:
                yield step

    # 5) Finalize: settle the bounty (receipt stored before the response completes),
    #    keep the transcript, add to reputation; then the debug summary and Done.
    t = clock()
    for finisher in ctx.finishers:
        await finisher(report, req)
    report.timings["settlement"] = clock() - t
    if report.settlement is not None:
        yield Settled(report.settlement, report.receipt)
    if req.debate.output_mode == "debug" and report.route.decision == "fuse":
        yield AnswerDelta("\n\n---\n" + report.debug_text())
    report.timings["total"] = clock() - started
    yield RunDone(report)


async def _fuse(ctx: RunContext) -> AsyncGenerator[Event, None]:
    """Steps 2-4 of a fused run: seats, deliberation, then the judge and the synthesis
    (or the answer the protocol already wrote)."""
    req, report = ctx.req, ctx.report
    clock = time.perf_counter
    # 2) Seats, then deliberate. No event goes out before round 1's quorum is known,
    #    so a missed quorum is a clean HTTP error even for streaming clients.
    ctx.seats = await _seats(ctx)
    # The worst case must fit the caller's LiteLLM budgets before any member is called.
    estimate = budget.admit(ctx)
    report.budget = estimate.as_dict() if estimate else None
    t = clock()
    outcome = None
    try:
        async with aclosing(PROTOCOLS[ctx.preset.protocol](ctx)) as items:
            async for item in items:
                if isinstance(item, Outcome):
                    outcome = item
                else:
                    yield item
    except QuorumError as exc:
        if ctx.ledger.expired():
            raise DeadlineError(f"the run's deadline passed during the panel: {exc}") from exc
        fallback = ctx.profile.panel.on_quorum_failure
        if fallback == "error" or (fallback == "best_answer" and not exc.answers):
            raise
        outcome = _best_answer(ctx, exc) if fallback == "best_answer" else None
        lost = QuorumLost(fallback, len(exc.answers), exc.required, tuple(exc.failures),
                          answered_by=outcome.answer_source if outcome else ctx.profile.router.single_model)
        report.quorum_fallback = lost.data()
        yield lost
        yield Progress("panel", lost.text())
        if outcome is None:  # single_model
            report.timings["panel"] = clock() - t
            t = clock()
            async with aclosing(_forward(ctx)) as relayed:
                async for event in relayed:
                    yield event
            report.timings["forward"] = clock() - t
            return
    if outcome is None:
        raise RuntimeError(f"the {ctx.preset.protocol} protocol ended without an outcome")
    report.outcome, report.panel = outcome, outcome.panel
    report.deliberation, report.transcript = outcome.summary, outcome.transcript
    # The decision rule for extractable answers (a number, an option, yes/no, a short
    # fact), every protocol; round 1's early stop, if any, reported beside it.
    vote = extract.panel_vote([a.completion.text for a in outcome.panel.answers], ctx.question)
    extras: DeliberationSummary = {**({"panel_vote": vote} if vote else {}),
                            **({"early_stop": report.early_stop} if report.early_stop else {})}
    if extras:
        report.deliberation = {"rounds": 1, "stop_reason": None} | (report.deliberation or {}) | extras
    report.timings["panel"] = clock() - t  # the whole deliberation, every round
    if vote is not None and outcome.answer is None and ctx.profile.aggregator.extractable == "vote":
        best = guard.agreeing_draft(outcome.panel.answers, ctx.question)  # the vote decides, no writer
        outcome = dataclasses.replace(outcome, answer=best.completion.text)
        report.deliberation = (report.deliberation or {}) | {"answer_from": best.seat.name}
    failed = "".join(f"; {f.seat.name} {f.kind}" for f in outcome.panel.failures)
    if budget.over_cap(ctx):  # no judge and no synthesis: the best answer so far
        if outcome.answer is None:
            best = guard.agreeing_draft(outcome.panel.answers, ctx.question)
            outcome = dataclasses.replace(outcome, answer=best.completion.text, answer_source=best.seat.name)
        _capped(ctx, "before the judge", outcome.answer or "")
    if outcome.answer is not None and (not wants_json(req.final_params) or is_json(outcome.answer)):
        # The protocol wrote the final answer (consensus, a debate out of budget, a cost cap).
        report.synthesis = Synthesis(outcome.answer, None, fallback=outcome.answer_source is not None,
                                     fallback_source=outcome.answer_source)
        yield AnswerDelta(outcome.answer)
    else:
        yield Progress("panel", f"Panel: {len(outcome.panel.answers)} of {len(ctx.seats)} answered{failed}.")
        # 3) Judge: anonymized, length-normalized structured analysis (minority flagged),
        #    unless the protocol brought its own (council: the members' ranks).
        t = clock()
        verdict = outcome.verdict or await judge.analyze(ctx.completer, ctx.profile.aggregator,
                                                         prompts.tool_turns_as_text(req.messages),
                                                         outcome.panel.answers, ctx.rng,
                                                         minority=list(outcome.minority))
        report.verdict = verdict
        report.timings["judge"] = clock() - t
        await ctx.drain()  # the round's map, measured beside the judge
        yield JudgeDone(verdict, report.timings["judge"])
        yield Progress("judge", f"Judge analysis degraded: {verdict.error}" if verdict.degraded
                       else "Council ranking stands in for the judge." if outcome.verdict else "Judge analysis done.")
        # 4) Synthesis, streamed to streaming clients; the client's max_tokens, stop
        #    and response_format apply here and only here. Past the cost cap: the
        #    judge's best-supported answer instead.
        t = clock()
        yield SynthesisStarted(ctx.profile.aggregator.synthesizer)
        pieces = synthesis.write(ctx.completer, ctx.profile.aggregator, ctx.writer_messages, verdict,
                                 outcome.panel.answers, ctx.final_params, stream=req.stream, vote=vote) \
            if not budget.over_cap(ctx) else _capped_answer(ctx, judge.best_answer(verdict, outcome.panel.answers))
        if (vote is not None or extract.question_form(ctx.question)) and not wants_json(req.final_params):
            pieces = _guarded(ctx, pieces, outcome.panel.answers, voted=vote is not None)  # read whole first
        async with aclosing(pieces):
            async for piece in pieces:
                if isinstance(piece, Synthesis):
                    report.synthesis = piece
                else:
                    yield AnswerDelta(piece)
        report.timings["synthesis"] = clock() - t
        done = report.synthesis
        assert done is not None, "every writer ends with its Synthesis"
        yield SynthesisDone(done.attempts, done.cut, done.fallback, done.error)



def _best_answer(ctx: RunContext, lost: QuorumError) -> Outcome:
    """`panel.on_quorum_failure: best_answer`: the answers that came back stand as the
    panel, the best of them (`guard.agreeing_draft`: the majority's answer, else the
    first) as the final answer: no judge, no writer."""
    answered = Panel(tuple(lost.answers), tuple(lost.failures))
    best = guard.agreeing_draft(answered.answers, ctx.question)
    return Outcome(answered, panel.results(answered, 1), answer=best.completion.text, answer_source=best.seat.name)


async def _guarded(ctx: RunContext, pieces: AsyncGenerator[str | Synthesis, None], answers: tuple[PanelAnswer, ...],
                   voted: bool) -> AsyncGenerator[str | Synthesis, None]:
    """The synthesis of a short question, read whole before it is sent: it must not be the
    prompt's scaffolding and, where the panel `voted`, must state a member's answer; else
    the vote's draft stands (core/stages/guard.py)."""
    written: Synthesis | None = None
    async with aclosing(pieces):
        async for piece in pieces:
            if isinstance(piece, Synthesis):
                written = piece
    assert written is not None
    replaced = None if written.tool_calls or written.fallback else guard.stand_in(written.text, ctx.question,
                                                                                    answers, voted)
    if replaced is None:
        yield written.text
        yield written
        return
    draft, why = replaced
    ctx.report.notes.append(f"vote guard: {why} (from {draft.seat.name})")
    ctx.emit(AnswerReplaced(draft.seat.name, why))
    yield draft.completion.text
    yield dataclasses.replace(written, text=draft.completion.text, fallback=True, fallback_source=draft.seat.name,
                              error=f"vote guard: {why}", cut=False)


def _capped(ctx: RunContext, where: str, answer: str) -> None:
    """The cost cap stopped the run `where`; `answer` stands, or, when the client asked for
    JSON and it is not JSON, the run fails (no writer may be called past the cap)."""
    cap, spent = ctx.req.max_cost_usd, ctx.report.cost
    if wants_json(ctx.req.final_params) and not is_json(answer):
        raise BudgetError(f"the cost cap of {cap} USD was reached {where} (spent {spent:.6f}) and no answer so far "
                          "is the JSON the response_format asks for; raise chorus.max_cost_usd")
    ctx.report.budget = (ctx.report.budget or {}) | {"stopped": where, "spent_usd": round(spent, 8)}
    ctx.report.notes.append(f"cost cap {cap} USD reached {where} (spent {spent:.6f}): the best answer so far stands")


async def _capped_answer(ctx: RunContext, best: PanelAnswer) -> AsyncGenerator[str | Synthesis, None]:
    _capped(ctx, "before the synthesis", best.completion.text)
    yield best.completion.text
    yield Synthesis(best.completion.text, None, fallback=True, fallback_source=best.seat.name)


async def _route(ctx: RunContext) -> Route:
    req, profile = ctx.req, ctx.profile
    if (req.options.policy or profile.router.policy) == "consult":
        return await _consult(ctx)
    if req.forward_reason:
        return Route("single", req.options.policy or profile.router.policy, req.forward_reason)
    return await router.decide(profile.router, req.options.policy, req.messages, prompt_text(req.messages),
                               ctx.completer)


async def _consult(ctx: RunContext) -> Route:
    """router.policy consult: the single model answers, with the private consult_panel
    tool; it fuses only if the model calls it (or the call failed: fail open)."""
    params = {k: v for k, v in ctx.req.params.items() if k not in PLUGIN_PARAMS}
    decision = await consult.decide(ctx.completer, ctx.profile.router.single_model or "", ctx.req.messages, params,
                                    timeout=ctx.ledger.timeout(ctx.panel.timeout_s))
    if decision.error:
        ctx.consulted = decision.question
        return Route("fuse", "consult", f"the single model failed ({decision.error}); fail open")
    if decision.question is None:
        ctx.answered = decision.completion
        return Route("single", "consult", "the single model answered without consulting the panel")
    ctx.consulted = decision.question
    return Route("fuse", "consult", "the single model consulted the panel")


async def _answered(ctx: RunContext) -> AsyncGenerator[AnswerDelta, None]:
    """2'') The consult gate's own answer (text, or calls of the client's tools): recorded
    like a forwarded run, sent as the run's answer."""
    completion = ctx.answered
    assert completion is not None
    if completion.text:
        yield AnswerDelta(completion.text)
    seat = Seat("single_model", completion.model)
    ctx.report.panel = Panel((PanelAnswer(seat, completion),), ())
    ctx.report.outcome = Outcome(ctx.report.panel, (SeatResult(seat, 1, completion.text),))
    ctx.report.synthesis = Synthesis(completion.text, completion)


async def _forward(ctx: RunContext) -> AsyncGenerator[Relay, None]:
    """2') The single model answers; its own response is relayed, and the run is
    recorded like a fused one with one contributor (settled, kept, counted)."""
    req, ledger = ctx.req, ctx.ledger
    model = ctx.profile.router.single_model or ""
    params = {k: v for k, v in req.params.items() if k not in PLUGIN_PARAMS}
    completion = None
    assert ctx.forwarder is not None, "a run that may forward has a forwarder"
    try:
        items = ctx.forwarder.forward(model, req.messages, params, stream=req.stream,
                                      timeout=ledger.timeout(ctx.panel.timeout_s))
        async with aclosing(items):
            async for item in items:
                if isinstance(item, Relay):
                    yield item
                else:
                    completion = item
                    ledger.record("forward", "single_model", completion)
                    ctx.emit(AnswerDelta(completion.text))  # the log's copy: the client has the relay
    except BaseException:
        if completion is None:  # failed or cancelled: the prompt was sent, so it is counted
            ledger.record("forward", "single_model", ledger.estimate(model, req.messages, ""),
                          status="cancelled", estimated=True)
        raise
    if completion is None:
        raise RuntimeError("the single model's call ended without an answer")
    seat = Seat("single_model", model)
    answers = (PanelAnswer(seat, completion),)
    ctx.report.relayed = True
    ctx.report.panel = Panel(answers, ())
    ctx.report.outcome = Outcome(ctx.report.panel, (SeatResult(seat, 1, completion.text),))
    ctx.report.synthesis = Synthesis(completion.text, None)


async def _seats(ctx: RunContext) -> list[Seat]:
    """The static seats (ordered / filtered by reputation when the profile asks), then the
    seats drawn from the profile's peer pool. Reputation is advice: when the store cannot
    answer, the configured order stands and the pool is drawn as if every peer were new."""
    config, rep = ctx.panel, ctx.panel.reputation
    seats = panel.seats(config)
    offers = await ctx.pool(config.pool) if config.pool and ctx.pool is not None else []
    rank_static = bool(seats) and (rep.order or rep.min_score is not None)
    scores: dict[str, float | None] = {}
    if ctx.reputation is not None and (rank_static or (offers and config.select == "reputation")):
        try:
            counters = await ctx.reputation(sorted({s.scored_as for s in seats} | {o["peer_id"] for o in offers}))
            scores = {k: reputation.summary(c, rep.min_runs)["score"] for k, c in counters.items()}
        except Exception as exc:  # noqa: BLE001 - advisory: any store failure keeps the configured order
            ctx.report.notes.append(f"reputation unavailable ({type(exc).__name__}); configured seat order kept")
    if rank_static:
        seats = reputation.select(seats, scores, order=rep.order, min_score=rep.min_score, quorum=ctx.quorum)
    if not config.pool:
        return seats
    personas = list(ctx.profile.personas) or list(prompts.PERSONAS)
    drawn = draw.draw(offers, config, scores, personas, ctx.rng, {s.name for s in seats})
    seats += drawn.seats
    if len(seats) < ctx.quorum:
        floor = f", {drawn.below_floor} of them under the reputation floor" if drawn.below_floor else ""
        raise PoolError(f"pool {config.pool!r} has {drawn.live} live peer(s){floor}: {len(drawn.seats)} seated, "
                        f"{ctx.quorum - (len(seats) - len(drawn.seats))} needed for this profile's quorum of "
                        f"{ctx.quorum}")
    ctx.emit(Seated(config.pool, drawn.live, list(drawn.seats)))
    return seats
