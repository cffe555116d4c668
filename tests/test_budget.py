"""Budgets: the worst case admitted against the caller's LiteLLM budgets before any
member is called, and the cost cap that stops a run early with the best answer so far."""

import dataclasses

import pytest

from chorus_litellm.core.errors import BudgetError, RequestError
from chorus_litellm.core.stages import budget, panel
from chorus_litellm.testing import FakeCompleter, HashEmbedder
from chorus_litellm.core.events import AnswerDelta, RunDone
from chorus_litellm.core.types import Budget
from tests.factories import context, profile, request, run_events

QUESTION = [{"role": "user", "content": "one two three four"}]  # 4 tokens to FakeCompleter, +600 framing
MODELS = ("model-a", "model-b", "model-c", "judge", "writer")


def fake(**kwargs) -> FakeCompleter:
    return FakeCompleter(json_models={"judge"}, prices={m: (1e-6, 1e-6) for m in MODELS}, **kwargs)


def estimate(prof, completer=None, **params):
    req = request(prof, messages=QUESTION, **params)
    ctx = context(req, completer or fake())
    ctx.seats = panel.seats(prof.panel)
    return budget.worst_case(ctx)


def capped(**panel):
    return {"members": ["model-a", "model-b", "model-c"], "min_quorum": 2, "max_tokens": 100, **panel}


async def test_the_worst_case_prices_every_step_at_its_largest():
    moa = estimate(profile(panel=capped(), aggregator={"judge": "judge", "synthesizer": "writer",
                                                          "judge_max_tokens": 100}), max_tokens=200)
    # round 1: 3 x (604 in + 100 out); judge: 604 + 300 drafts in, 100 out, twice (one JSON repair);
    # synthesis: 604 + 300 + 100 in, 200 out
    assert [(name, round(usd, 6)) for name, usd in moa.steps] == [
        ("panel round 1", 0.002112), ("judge", 0.002008), ("synthesis", 0.001204)]
    assert moa.worst == pytest.approx(0.005324) and moa.cap is None
    debate = estimate(profile(panel=capped(), debate={"protocol": "debate", "max_rounds": 3},
                              aggregator={"judge": "judge", "synthesizer": "writer", "judge_max_tokens": 100}),
                      max_tokens=200)
    # a later round reads its own answer and two others': 3 x (604 + 300 in + 100 out)
    assert [name for name, _ in debate.steps] == ["panel round 1", "debate round 2", "debate round 3", "judge",
                                                  "synthesis"]
    assert debate.worst == pytest.approx(0.002112 + 2 * 0.003012 + 0.002008 + 0.001204)
    consensus = estimate(profile(panel=capped(), debate={"protocol": "consensus", "max_rounds": 2}), max_tokens=200)
    assert [(name, round(usd, 6)) for name, usd in consensus.steps] == [
        ("panel round 1", 0.002112), ("critiques", 0.003012), ("candidate", 0.001404), ("vote 1", 0.002712),
        ("revision 1", 0.001304), ("vote 2", 0.002712)]


async def test_without_a_token_cap_a_call_is_priced_at_the_models_output_limit():
    prof = profile(panel={"members": ["model-a", "model-b"], "min_quorum": 2})
    worst = estimate(prof, fake(output_limits={"model-a": 1000}))
    # model-a: its own limit; model-b: limits.assumed_max_tokens (4096)
    assert dict(worst.steps)["panel round 1"] == pytest.approx((604 + 1000 + 604 + 4096) * 1e-6)


async def test_a_cost_cap_bounds_the_worst_case_at_the_cap_plus_the_dearest_step():
    prof = profile(panel=capped(), aggregator={"judge": "judge", "synthesizer": "writer", "judge_max_tokens": 100},
                   limits={"max_cost_usd": 0.001})
    worst = estimate(prof, max_tokens=200)
    assert worst.cap == 0.001 and worst.full == pytest.approx(0.005324)
    assert worst.worst == pytest.approx(0.001 + 0.002112)  # the cap, then at most the panel round
    with pytest.raises(RequestError, match="chorus.max_cost_usd: 0.5 is more than this profile's limit of 0.001"):
        request(prof, chorus={"max_cost_usd": 0.5})
    assert request(prof, chorus={"max_cost_usd": 0.0005}).max_cost_usd == 0.0005
    for bad in (0, -1, "cheap"):
        with pytest.raises(RequestError, match="chorus.max_cost_usd"):
            request(prof, chorus={"max_cost_usd": bad})


async def test_a_budget_too_small_for_the_worst_case_is_refused_before_any_call():
    completer = fake()
    poor = dataclasses.replace(request(profile(panel=capped()), messages=QUESTION).caller, budgets=(
        Budget("team", "team-a", 9.0, 100.0), Budget("key", "alias-1", 0.9995, 1.0)))
    req = dataclasses.replace(request(profile(panel=capped()), messages=QUESTION), caller=poor)
    with pytest.raises(BudgetError) as refused:
        await run_events(req, completer)
    assert completer.calls == []  # no member, judge or synthesizer was called
    text = str(refused.value)
    assert text.startswith("Budget has been exceeded! Key=alias-1 Current cost: 0.9995, Estimated request cost: ")
    assert "Max budget: 1.0" in text and "panel round 1" in text and "chorus.max_cost_usd" in text
    roomy = dataclasses.replace(poor, budgets=(Budget("key", "alias-1", 0.5, 1.0),))
    events = await run_events(dataclasses.replace(req, caller=roomy), completer)
    report = events[-1].report
    assert report.budget["worst_case_usd"] < 0.5 and [s["step"] for s in report.budget["steps"]][0] == "panel round 1"


async def test_the_cost_cap_skips_the_judge_and_answers_with_the_panels_majority():
    completer = fake()
    completer.enqueue("model-a", "I think the answer is 12.")
    completer.enqueue("model-b", "Counting again, the answer is 13.")
    completer.enqueue("model-c", "Thirteen. The answer is 13.")
    prof = profile(panel=capped(min_quorum=3), limits={"max_cost_usd": 0.002})  # each call costs 0.001
    events = await run_events(request(prof, messages=QUESTION), completer)
    report = events[-1].report
    assert completer.calls_to("judge") == [] and completer.calls_to("writer") == []
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) in {
        "Counting again, the answer is 13.", "Thirteen. The answer is 13."}
    assert report.budget["stopped"] == "before the judge" and report.cost == pytest.approx(0.003)
    assert any("cost cap 0.002 USD reached before the judge" in n for n in report.notes)


async def test_the_cost_cap_skips_the_synthesis_for_the_judges_best_answer():
    completer = fake()
    events = await run_events(request(profile(panel=capped()), messages=QUESTION, chorus={"max_cost_usd": 0.0035}),
                              completer)
    report = events[-1].report
    assert len(completer.calls_to("judge")) == 1 and completer.calls_to("writer") == []
    assert report.synthesis.fallback and report.synthesis.fallback_source in {"model-a", "model-b", "model-c"}
    assert report.budget["stopped"] == "before the synthesis"
    assert isinstance(events[-1], RunDone) and report.extension()["budget"]["max_cost_usd"] == 0.0035


async def test_the_cost_cap_ends_a_debate_after_the_round_that_spent_it():
    completer = fake()
    prof = profile(panel=capped(), debate={"protocol": "debate", "max_rounds": 3, "adaptive_stop": False},
                   limits={"max_cost_usd": 0.001})
    events = await run_events(request(prof, messages=QUESTION), completer, embedder=HashEmbedder())
    report = events[-1].report
    assert report.deliberation["stop_reason"] == "cost_cap_reached" and report.deliberation["rounds"] == 1
    assert completer.calls_to("judge") == [] and completer.calls_to("writer") == []
    assert report.synthesis.fallback_source in {"model-a", "model-b", "model-c"}


async def test_the_cost_cap_ends_moa_layers_and_the_consensus_loop():
    completer = fake()
    layered = profile(panel=capped(), aggregator={"judge": "judge", "synthesizer": "writer", "layers": 3},
                      limits={"max_cost_usd": 0.001})
    report = (await run_events(request(layered, messages=QUESTION), completer))[-1].report
    assert report.deliberation["stop_reason"] == "cost_cap_reached" and report.deliberation["layers"] == 1
    assert len(completer.calls_to("model-a")) == 1
    completer = fake()
    voting = profile(panel=capped(), debate={"protocol": "consensus", "max_rounds": 3},
                     limits={"max_cost_usd": 0.004})
    report = (await run_events(request(voting, messages=QUESTION), completer))[-1].report
    # drafts (0.003), critiques (0.006): the candidate is never written; the first draft stands
    assert report.deliberation["stop_reason"] == "cost_cap_reached"
    assert completer.calls_to("writer") == [] and len(completer.calls_to("model-a")) == 2
    assert report.synthesis.fallback_source in {"model-a", "model-b", "model-c"}


async def test_past_the_cost_cap_a_json_answer_that_does_not_exist_is_refused_without_calling_the_judge():
    completer = fake()
    prof = profile(panel=capped(), limits={"max_cost_usd": 0.002})
    with pytest.raises(BudgetError, match="no answer so far is the JSON the response_format asks for"):
        await run_events(request(prof, messages=QUESTION, response_format={"type": "json_object"}), completer)
    assert completer.calls_to("judge") == [] and completer.calls_to("writer") == []
    completer = fake()
    for model in ("model-a", "model-b", "model-c"):
        completer.enqueue(model, '{"answer": 4}')
    events = await run_events(request(prof, messages=QUESTION, response_format={"type": "json_object"}), completer)
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == '{"answer": 4}'


def test_a_team_key_is_held_to_its_teams_budget_not_its_users():
    from chorus_litellm.gateway.translate import caller_of

    meta = {"user_api_key_team_id": "t", "user_api_key_user_id": "u", "user_api_key_team_spend": 1,
            "user_api_key_team_max_budget": 5, "user_api_key_user_spend": 10, "user_api_key_user_max_budget": 10,
            "user_api_key_max_budget": float("inf")}
    assert caller_of({"metadata": meta}).budgets == (Budget("team", "t", 1.0, 5.0),)
