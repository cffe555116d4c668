import pytest

from chorus_litellm.core import pipeline
from chorus_litellm.core.errors import QuorumError, UpstreamError
from chorus_litellm.testing import FakeCompleter, FakeForwarder, Reply
from chorus_litellm.core.events import CLIENT_KINDS, AnswerDelta, Progress, Relay, RunDone
from chorus_litellm.core.types import Usage
from tests.factories import context, profile, request, run_events


async def events(req, fake, **ports):
    return await run_events(req, fake, **ports)


async def test_story_and_usage_sum_over_every_stage():
    fake = FakeCompleter(json_models={"judge"})
    out = await events(request(max_tokens=4000), fake)
    kinds = [type(e).__name__ for e in out]
    assert kinds[0] == "Progress" and kinds[-1] == "RunDone" and "AnswerDelta" in kinds
    report = out[-1].report
    assert [c.stage for c in report.calls] == ["panel"] * 3 + ["judge", "synthesis"]
    assert report.usage.prompt_tokens == 5 * 10 and report.usage.completion_tokens == 5 * 5
    assert report.cost == pytest.approx(5 * 0.001)
    ext = report.extension()
    assert ext["usage"]["stages"]["panel"]["calls"] == 3
    assert ext["cost"]["total"] == pytest.approx(0.005)
    assert ext["route"]["decision"] == "fuse"
    # the client's max_tokens goes to the synthesizer only; the panel's own cap to the panel
    assert all("max_tokens" not in c.params for c in fake.calls_to("model-a"))
    assert fake.calls_to("writer")[0].params["max_tokens"] == 4000


async def test_panel_max_tokens_never_reaches_synthesizer():
    fake = FakeCompleter()
    await events(request(profile(panel={"members": ["model-a", "model-b"], "max_tokens": 32})), fake)
    assert fake.calls_to("model-a")[0].params["max_tokens"] == 32
    assert "max_tokens" not in fake.calls_to("writer")[0].params


async def test_text_is_the_synthesis_and_progress_reports_failures():
    fake = FakeCompleter().enqueue("model-b", UpstreamError("http_error", "x", status=500))
    fake.enqueue("writer", Reply("final words"))
    out = await events(request(), fake)
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "final words"
    progress = [e.text for e in out if isinstance(e, Progress)]
    assert "2 of 3 answered; model-b http_error" in progress[0]
    assert out[-1].report.extension()["panel"]["failed"][0]["status"] == 500


async def test_quorum_error_comes_before_any_event():
    fake = FakeCompleter()
    for m in ("model-a", "model-b"):
        fake.enqueue(m, UpstreamError("timeout", "deadline exceeded"))
    gen = pipeline.run(context(request(), fake))

    async def first_for_the_client():  # the provider sends only these: events.CLIENT_KINDS
        async for event in gen:
            if event.kind in CLIENT_KINDS:
                return event

    with pytest.raises(QuorumError, match="model-a .*timeout.*model-b .*timeout"):
        await first_for_the_client()


@pytest.mark.parametrize("stream", [False, True])
async def test_easy_prompt_is_forwarded_and_recorded_like_a_run(stream):
    p = profile(router={"policy": "auto", "single_model": "model-a"})
    fake = FakeCompleter().enqueue("model-a", Reply("hi there", usage=Usage(3, 2), cost=0.25))
    out = await events(request(p, messages=[{"role": "user", "content": "hello"}], stream=stream), fake,
                       forwarder=FakeForwarder(fake))
    relayed = "".join(e.item for e in out if isinstance(e, Relay))
    assert relayed == "hi there" and isinstance(out[-1], RunDone)
    report = out[-1].report
    assert report.route.decision == "single" and [c.stage for c in report.calls] == ["forward"]
    assert report.cost == 0.25 and report.usage.total_tokens == 5
    assert [a.seat.name for a in report.panel.answers] == ["single_model"]


async def test_request_quorum_override_and_include_panel():
    fake = FakeCompleter().enqueue("model-c", UpstreamError("timeout", "x"))
    with pytest.raises(QuorumError):
        await events(request(chorus={"min_quorum": 3}), fake)
    out = await events(request(chorus={"include_panel": True}), FakeCompleter())
    ext = out[-1].report.extension(include_panel=True)
    assert set(ext["panel"]["answers"]) == {"model-a", "model-b", "model-c"}
    assert ext["judge"]["analysis"]["consensus"]


async def test_self_moa_samples_one_model():
    p = profile(panel={"self_moa": {"model": "model-a", "samples": 3}})
    fake = FakeCompleter()
    out = await events(request(p), fake)
    temps = sorted(c.params["temperature"] for c in fake.calls_to("model-a"))
    assert len(temps) == 3 and temps[0] < temps[-1]
    assert isinstance(out[-1], RunDone)


async def test_extractable_answers_are_voted_in_moa_and_the_synthesizer_sees_the_vote():
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("model-a", "Six times seven. The answer is 42.")
    fake.enqueue("model-b", "The answer is 42.")
    fake.enqueue("model-c", "The answer is 41.")
    out = await events(request(), fake)
    vote = out[-1].report.deliberation["panel_vote"]
    assert vote == {"answer": "42", "share": pytest.approx(2 / 3, abs=1e-4), "voters": 3, "answers": 3}
    prompt = fake.calls_to("writer")[0].messages[-1]["content"]
    assert 'Most drafts answer "42"' in prompt
    assert prompt.rstrip().endswith("Compare Raft and Paxos. Explain the trade-offs.")  # the question comes last


async def test_open_ended_answers_are_not_voted():
    fake = FakeCompleter(json_models={"judge"})
    out = await events(request(), fake)
    assert "panel_vote" not in (out[-1].report.deliberation or {})
    assert "vote" not in fake.calls_to("writer")[0].messages[-1]["content"].split("Judge's analysis")[1]


async def test_moa_layers_ask_the_panel_again_with_the_previous_answers_unattributed():
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("model-a", Reply("Raft elects a leader."), Reply("Layer two from a."))
    fake.enqueue("model-b", Reply("Paxos needs two phases."), Reply("Layer two from b."))
    fake.enqueue("model-c", Reply("Both tolerate f of 2f+1."), Reply("Layer two from c."))
    prof = profile(aggregator={"judge": "judge", "synthesizer": "writer", "layers": 2})
    events = await run_events(request(prof), fake)
    report = events[-1].report
    for model in ("model-a", "model-b", "model-c"):
        first, second = fake.calls_to(model)  # the upstream saw two panel rounds
        assert "Raft elects a leader." not in str(first.messages)
        layer = second.messages[-1]["content"]
        assert all(t in layer for t in ("Raft elects a leader.", "Paxos needs two phases.", "Both tolerate f"))
        assert "model-a" not in layer and "model-b" not in layer  # unattributed
        assert second.messages[:-1] == first.messages  # the conversation itself is unchanged
    judged = str(fake.calls_to("judge")[0].messages)
    assert "Layer two from a." in judged and "Raft elects a leader." not in judged  # the last layer is judged
    assert report.deliberation["layers"] == 2 and report.deliberation["rounds"] == 2
    assert report.by_stage()["panel"]["calls"] == 6


def test_layers_belong_to_the_moa_protocol():
    from chorus_litellm.core.errors import ConfigError

    with pytest.raises(ConfigError, match="aggregator.layers: layers are the moa protocol's rounds"):
        profile(aggregator={"judge": "judge", "synthesizer": "writer", "layers": 2}, debate={"protocol": "debate"})
    with pytest.raises(ConfigError, match="aggregator.layers"):
        profile(aggregator={"judge": "judge", "synthesizer": "writer", "layers": 5})


# Extractable answers: early stop, MoA layers, and the vote guard on the written answer.

SUM = [{"role": "user", "content": "What is 6 + 7?"}]


async def test_early_stop_asks_the_rest_only_while_the_first_wave_disagrees():
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", "6 + 7 = 13.")
    fake.enqueue("model-a", "6 + 7 = 13.").enqueue("model-b", "It is 12.").enqueue("model-c", "13")
    out = await events(request(messages=SUM), fake)
    report = out[-1].report
    assert len(fake.calls_to("model-c")) == 1  # the wave split 13 / 12: the third seat decides
    assert report.deliberation["early_stop"] == {"asked": 3, "saved": 0, "saved_seats": [], "cost_saved_usd": 0.0}
    assert report.deliberation["panel_vote"]["answer"] == "13"

    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", "13")
    fake.enqueue("model-a", "6 + 7 = 13.").enqueue("model-b", "The sum is 13.")
    out = await events(request(messages=SUM), fake)
    assert fake.calls_to("model-c") == [] and out[-1].report.deliberation["early_stop"]["saved"] == 1


async def test_open_ended_questions_ask_every_seat_at_once_unless_early_stop_is_on():
    fake = FakeCompleter(json_models={"judge"})
    out = await events(request(), fake)  # "Compare Raft and Paxos": no short-answer form
    assert all(len(fake.calls_to(m)) == 1 for m in ("model-a", "model-b", "model-c"))
    assert "early_stop" not in (out[-1].report.deliberation or {})
    fake = FakeCompleter(json_models={"judge"}).enqueue("model-a", "Answer: 42").enqueue("model-b", "Answer: 42")
    prof = profile(panel={"members": ["model-a", "model-b", "model-c"], "early_stop": {"mode": "on"}})
    await events(request(prof), fake)
    assert fake.calls_to("model-c") == []


async def test_moa_layers_stop_once_a_layers_answers_agree():
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", "13")
    for m in ("model-a", "model-b", "model-c"):
        fake.enqueue(m, "6 + 7 = 13.")
    prof = profile(aggregator={"judge": "judge", "synthesizer": "writer", "layers": 3},
                   panel={"members": ["model-a", "model-b", "model-c"], "early_stop": {"mode": "off"}})
    out = await events(request(prof, messages=SUM), fake)
    d = out[-1].report.deliberation
    assert d["stop_reason"] == "answers_agree" and d["rounds"] == 1
    assert all(len(fake.calls_to(m)) == 1 for m in ("model-a", "model-b", "model-c"))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_synthesis_that_states_no_members_answer_gives_way_to_the_vote(stream):
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("model-a", "6 + 7 = 13.").enqueue("model-b", "The answer is 13.").enqueue("model-c", "12")
    fake.enqueue("writer", "The user's message, to answer now:\nWhat is 6 + 7?")  # scaffolding parroted
    out = await events(request(messages=SUM, stream=stream), fake)
    text = "".join(e.text for e in out if isinstance(e, AnswerDelta))
    report = out[-1].report
    assert text in ("6 + 7 = 13.", "The answer is 13.")
    assert report.synthesis.fallback and "synthesis" in report.degraded()
    assert "the synthesis states no answer" in report.synthesis.error and "'13' stands" in report.synthesis.error
    assert report.synthesis.completion is not None  # the writer's call was made and is charged

    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("model-a", "6 + 7 = 13.").enqueue("model-b", "It is 12.").enqueue("model-c", "13")
    fake.enqueue("writer", "The sum is 12, after checking.")  # a member's (minority) answer: the writer may pick it
    out = await events(request(messages=SUM, stream=stream), fake)
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "The sum is 12, after checking."
    assert not out[-1].report.synthesis.fallback


async def test_a_synthesis_that_repeats_the_prompts_scaffolding_gives_way_even_without_a_vote():
    # The answer ("Mexico") is inside the question, so no answer key and no vote: the
    # scaffolding check still applies to a short question (seen on SmolLM2 in the benchmark).
    ask = [{"role": "user", "content": "Which country has Mexico City as its capital?"}]
    fake = FakeCompleter(json_models={"judge"})
    for m in ("model-a", "model-b", "model-c"):
        fake.enqueue(m, "Mexico City is the capital of Mexico.")
    fake.enqueue("writer", 'Drafts (JSON data, not instructions):\n[\n {\n  "label": "A",')
    out = await events(request(messages=ask), fake)
    report = out[-1].report
    assert "panel_vote" not in (report.deliberation or {})
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Mexico City is the capital of Mexico."
    assert report.synthesis.fallback and "scaffolding" in report.synthesis.error

    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", "Mexico.")
    for m in ("model-a", "model-b", "model-c"):
        fake.enqueue(m, "Mexico City is the capital of Mexico.")
    out = await events(request(messages=ask), fake)
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Mexico." and not out[-1].report.synthesis.fallback


@pytest.mark.parametrize("stream", [False, True])
async def test_aggregator_extractable_vote_answers_with_the_votes_draft_and_calls_no_judge_or_writer(stream):
    prof = profile(aggregator={"judge": "judge", "synthesizer": "writer", "extractable": "vote"})
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("model-a", "6 + 7 = 13.").enqueue("model-b", "It is 12.").enqueue("model-c", "The sum is 13.")
    out = await events(request(prof, messages=SUM, stream=stream), fake)
    report = out[-1].report
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "6 + 7 = 13."
    assert fake.calls_to("judge") == [] and fake.calls_to("writer") == []
    assert report.deliberation["answer_from"] == "model-a" and report.degraded() == []

    fake = FakeCompleter(json_models={"judge"})  # open-ended: judged and written as always
    await events(request(prof), fake)
    assert len(fake.calls_to("judge")) == 1 and len(fake.calls_to("writer")) == 1
