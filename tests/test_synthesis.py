import random

import pytest

from chorus_litellm.config import AggregatorConfig
from chorus_litellm.errors import UpstreamError
from chorus_litellm.stages.judge import analyze
from chorus_litellm.stages.synthesis import write
from chorus_litellm.testing import FakeCompleter, Reply
from chorus_litellm.types import Completion, PanelAnswer, Seat, Synthesis

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
    assert call.stream and call.params == {"max_tokens": 5000}
    prompt = call.messages[-1]["content"]
    assert "alpha answer" in prompt and "critically" in prompt.lower()


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
    from chorus_litellm.errors import DeadlineError

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


async def test_non_streaming_is_one_plain_call_with_the_same_fallback():
    fake = FakeCompleter().enqueue("writer", Reply("whole answer"))
    deltas, result = await collect(fake, stream=False)
    assert deltas == ["whole answer"] and result.text == "whole answer"
    assert not fake.calls_to("writer")[0].stream
    fake = FakeCompleter().enqueue("writer", UpstreamError("timeout", "x"), UpstreamError("timeout", "x"))
    deltas, result = await collect(fake, stream=False)
    assert result.fallback and deltas == [result.text]
