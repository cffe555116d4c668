import random

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


async def test_fallback_to_best_supported_answer():
    fake = FakeCompleter().enqueue("writer", UpstreamError("http_error", "down", status=503))
    deltas, result = await collect(fake)
    assert result.fallback and result.fallback_source in {"a", "b"}
    assert "".join(deltas) in {"alpha answer", "beta answer"}
    assert "503" in result.error


async def test_failure_mid_stream_keeps_partial_answer():
    fake = FakeCompleter().enqueue("writer", Reply("one two three", error=UpstreamError("timeout", "x"), fail_after=2))
    deltas, result = await collect(fake)
    assert "".join(deltas) == "one two" and not result.fallback and "mid-answer" in result.error


async def test_non_streaming_is_one_plain_call_with_the_same_fallback():
    fake = FakeCompleter().enqueue("writer", Reply("whole answer"))
    deltas, result = await collect(fake, stream=False)
    assert deltas == ["whole answer"] and result.text == "whole answer"
    assert not fake.calls_to("writer")[0].stream
    fake = FakeCompleter().enqueue("writer", UpstreamError("timeout", "x"))
    deltas, result = await collect(fake, stream=False)
    assert result.fallback and deltas == [result.text]
