import random

import pytest

from chorus_litellm.core.config import AggregatorConfig
from chorus_litellm.core.errors import UpstreamError
from chorus_litellm.core.stages.judge import analyze
from chorus_litellm.core.stages.synthesis import write
from chorus_litellm.testing import FakeCompleter, Reply
from chorus_litellm.core.types import Completion, PanelAnswer, Seat, Synthesis

CFG = AggregatorConfig(judge="judge", synthesizer="writer")
MSGS = [{"role": "user", "content": "question"}]
ANSWERS = (PanelAnswer(Seat("a", "a"), Completion("alpha answer", "a")),
           PanelAnswer(Seat("b", "b"), Completion("beta answer", "b")))


async def collect(fake, params=None, stream=True):
    verdict = await analyze(fake, CFG, MSGS, ANSWERS, random.Random(0))
    pieces = [p async for p in write(fake, CFG, MSGS, verdict, ANSWERS, params or {}, stream)]
    return [p for p in pieces if isinstance(p, str)], pieces[-1]


async def test_streams_deltas_then_synthesis():
    fake = FakeCompleter().enqueue("writer", Reply("the fused answer"))
    deltas, result = await collect(fake, {"max_tokens": 5000})
    assert deltas == ["the", " fused", " answer"]
    assert isinstance(result, Synthesis) and result.text == "the fused answer" and not result.fallback
    call = fake.calls_to("writer")[0]
    # num_retries=0: this stage retries itself, so LiteLLM's Router must not retry the call too
    assert call.stream and call.params == {"max_tokens": 5000, "num_retries": 0}
    assert call.messages[0]["role"] == "system" and "critically" in call.messages[0]["content"]
    assert "alpha answer" in call.messages[-1]["content"]


async def test_fallback_to_best_supported_answer_after_one_retry():
    down = UpstreamError("http_error", "down", status=503)
    fake = FakeCompleter().enqueue("writer", down, down)
    deltas, result = await collect(fake)
    assert result.fallback and result.fallback_source in {"a", "b"} and result.attempts == 2
    assert "".join(deltas) in {"alpha answer", "beta answer"}
    assert "503" in result.error and len(fake.calls_to("writer")) == 2


async def test_a_failed_synthesizer_call_is_retried_once_and_the_retry_answers():
    fake = FakeCompleter().enqueue("writer", UpstreamError("connection", "reset"), Reply("second try"))
    deltas, result = await collect(fake)
    assert "".join(deltas) == "second try" and not result.fallback and result.error is None
    assert result.attempts == 2 and len(fake.calls_to("writer")) == 2


async def test_errors_a_retry_cannot_fix_fall_back_at_once():
    for error in (UpstreamError("content_filter", "blocked"), UpstreamError("http_error", "bad", status=400),
                  UpstreamError("empty", "nothing")):
        fake = FakeCompleter().enqueue("writer", error, Reply("never asked"))
        _deltas, result = await collect(fake)
        assert result.fallback and result.attempts == 1 and len(fake.calls_to("writer")) == 1, error.kind


async def test_a_json_answer_out_of_time_is_a_deadline_error():
    from chorus_litellm.core.errors import DeadlineError

    late = UpstreamError("timeout", "deadline exceeded")
    fake = FakeCompleter().enqueue("writer", late, late)
    with pytest.raises(DeadlineError, match="JSON the response_format"):
        await collect(fake, {"response_format": {"type": "json_object"}})
    fake = FakeCompleter().enqueue("writer", UpstreamError("http_error", "down", status=500),
                                   UpstreamError("http_error", "down", status=500))
    with pytest.raises(UpstreamError) as err:
        await collect(fake, {"response_format": {"type": "json_object"}})
    assert err.value.status_code == 502


async def test_failure_mid_stream_keeps_partial_answer():
    fake = FakeCompleter().enqueue("writer", Reply("one two three", error=UpstreamError("timeout", "x"), fail_after=2))
    deltas, result = await collect(fake)
    assert "".join(deltas) == "one two" and not result.fallback and "mid-answer" in result.error
    assert result.cut and result.attempts == 1 and len(fake.calls_to("writer")) == 1  # words sent: never re-asked


async def test_every_synthesizer_call_opts_out_of_the_routers_retries_even_with_debate_max_retries():
    from chorus_litellm.gateway.llm import DefaultParams

    down = UpstreamError("http_error", "down", status=503)
    fake = FakeCompleter().enqueue("writer", down, down)
    _deltas, result = await collect(DefaultParams(fake, num_retries=3))  # a profile's debate.max_retries
    # the judge and the writer retry themselves: the Router's retries never stack on theirs
    assert [c.params["num_retries"] for c in fake.calls] == [0, 0, 0]
    assert result.attempts == 2 == len(fake.calls_to("writer"))


async def test_attempts_count_the_routers_retries_if_it_made_any():
    """A LiteLLM that ignored num_retries=0 (a Router retry_policy on an old release) still
    gets counted: the completion says how many upstream calls it took."""
    import dataclasses

    class RouterRetried(FakeCompleter):
        async def complete(self, model, messages, **kwargs):
            return dataclasses.replace(await super().complete(model, messages, **kwargs), attempts=3)

    fake = RouterRetried().enqueue("writer", UpstreamError("connection", "reset"), Reply("late answer"))
    _deltas, result = await collect(fake, stream=False)
    assert result.text == "late answer" and result.attempts == 1 + 3


def test_a_cut_synthesis_is_degraded_and_ends_with_length():
    import dataclasses

    from chorus_litellm.core.report import RunReport
    from chorus_litellm.core.types import Caller

    report = RunReport("r", "p", Caller())
    report.synthesis = Synthesis("one two", None, error="synthesizer failed mid-answer: connection", cut=True)
    ext = report.extension()
    assert ext["degraded"] == ["synthesis_cut"] and ext["synthesis"]["cut"] and report.finish_reason() == "length"
    assert "cut off" in report.debug_text()
    report.synthesis = Synthesis("whole", Completion("whole", "writer", finish_reason="length"))
    assert report.finish_reason() == "length" and report.degraded() == []  # stopped at the client's max_tokens
    report.synthesis = Synthesis("whole", Completion("whole", "writer", finish_reason="stop"))
    assert report.finish_reason() == "stop" and not report.extension()["synthesis"]["cut"]
    # a whole draft that stood in for a cut or capped synthesis (the vote guard) is not cut
    for written in (Synthesis("one two", None, cut=True), Synthesis("x", Completion("x", "w", finish_reason="length"))):
        report.synthesis = dataclasses.replace(written, text="draft", fallback=True, fallback_source="a")
        assert report.finish_reason() == "stop" and report.degraded() == ["synthesis"]


async def test_non_streaming_is_one_plain_call_with_the_same_fallback():
    fake = FakeCompleter().enqueue("writer", Reply("whole answer"))
    deltas, result = await collect(fake, stream=False)
    assert deltas == ["whole answer"] and result.text == "whole answer"
    assert not fake.calls_to("writer")[0].stream
    fake = FakeCompleter().enqueue("writer", UpstreamError("timeout", "x"), UpstreamError("timeout", "x"))
    deltas, result = await collect(fake, stream=False)
    assert result.fallback and deltas == [result.text]


def test_the_writer_reads_instructions_first_and_the_question_last_unlabelled():
    from chorus_litellm.core.stages import prompts

    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "What is 6 + 7?"}]
    request = prompts.writer_request(convo, prompts.SYNTH_SYSTEM,
                                     prompts.synth_user([("A", "13")], None, None, "What is 6 + 7?"))
    assert [m["role"] for m in request] == ["system", "user", "assistant", "user", "user"]
    assert request[0]["content"].startswith("You write the final answer") and request[0]["content"].endswith("Be brief.")
    assert request[1:4] == convo[1:]  # the client's turns as they are
    assert request[-1]["content"].endswith("\n\nWhat is 6 + 7?")  # the question itself, last
    assert "to answer now" not in request[-1]["content"] and "You write" not in request[-1]["content"]


async def test_the_runs_event_log_records_a_cut_synthesis():
    from chorus_litellm.core.runlog import RunLog
    from tests.factories import request, run_events

    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("writer", Reply("one two three", error=UpstreamError("connection", "reset"), fail_after=2))
    seen = []
    out = await run_events(request(stream=True), fake, log=RunLog(seen.append))
    (done,) = [e for e in seen if e.type == "run_done"]
    assert done.data["degraded"] == ["synthesis_cut"] and out[-1].report.finish_reason() == "length"
