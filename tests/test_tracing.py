"""OpenTelemetry spans per stage, built from real pipeline runs' events (SDK in-memory exporter)."""

import dataclasses

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags

from chorus_litellm.core import pipeline
from chorus_litellm.observe.tracing import RunSpans
from chorus_litellm.core.errors import UpstreamError
from chorus_litellm.core.runlog import RunLog
from chorus_litellm.testing import FakeCompleter, HashEmbedder, Reply
from tests.factories import context, refusing_debate, request


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


async def traced(exporter, req, fake, parent=None, skew=None, **ports):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = RunSpans(req, parent, tracer=provider.get_tracer("test"))
    listener = spans if skew is None else (lambda event: spans(skew(event)))
    error = None
    try:
        async for _ in pipeline.run(context(req, fake, log=RunLog(listener, watched=False), **ports)):
            pass
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    return {s.name: [x for x in exporter.get_finished_spans() if x.name == s.name]
            for s in exporter.get_finished_spans()}, error


async def test_a_moa_run_is_one_tree_of_stage_spans_under_the_callers_span(exporter):
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("The answer is 42."))
    fake.enqueue("model-c", UpstreamError("http_error", "upstream 500", status=500))
    parent = NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1)))
    spans, error = await traced(exporter, request(), fake, parent)
    assert error is None
    assert set(spans) == {"chorus.run", "chorus.gate", "chorus.round", "chorus.member", "chorus.judge",
                          "chorus.synthesis", "chorus.settlement"}
    run = spans["chorus.run"][0]
    assert run.parent.span_id == 0x5678 and run.context.trace_id == 0x1234  # LiteLLM's request span
    assert run.attributes["chorus.outcome"] == "degraded" and run.attributes["chorus.profile"] == "test"
    assert run.attributes["chorus.cost_usd"] > 0 and run.attributes["gen_ai.usage.output_tokens"] > 0
    for name in ("chorus.gate", "chorus.round", "chorus.judge", "chorus.synthesis", "chorus.settlement"):
        (span,) = spans[name]
        assert span.parent.span_id == run.context.span_id
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    (rnd,) = spans["chorus.round"]
    members = {m.attributes["chorus.seat"]: m for m in spans["chorus.member"]}
    assert set(members) == {"model-a", "model-b", "model-c"}
    assert all(m.parent.span_id == rnd.context.span_id for m in members.values())
    assert members["model-c"].status.status_code == StatusCode.ERROR
    assert members["model-c"].attributes["chorus.kind"] == "http_error"
    assert members["model-a"].attributes["gen_ai.usage.output_tokens"] == 5
    stages = [spans[n][0] for n in ("chorus.gate", "chorus.round", "chorus.judge", "chorus.synthesis",
                                    "chorus.settlement")]
    assert [s.name for s in sorted(stages, key=lambda s: s.start_time)] == [
        "chorus.gate", "chorus.round", "chorus.judge", "chorus.synthesis", "chorus.settlement"]


async def test_stage_spans_end_inside_the_run_whatever_the_stage_timers_say(exporter):
    """A stage's timer starts before its event is stamped (the pipeline reads the clock, then
    yields the event, which the log stamps when it takes it), so a stamp plus a duration can
    end after the run: clean-clone CI saw the synthesis span end 53 us after chorus.run under
    load. Here the synthesis timer says a second more than its stamps: the tree still nests."""
    def late(event):
        if event.type == "run_done":
            timings = {**event.data["timings"], "synthesis": event.data["timings"]["synthesis"] + 1.0}
            return dataclasses.replace(event, data={**event.data, "timings": timings})
        return event

    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("The answer is 42."))
    spans, error = await traced(exporter, request(), fake, skew=late)
    assert error is None
    (run,) = spans["chorus.run"]
    (synthesis,) = spans["chorus.synthesis"]
    for span in [s for found in spans.values() for s in found if s is not run]:
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time, span.name
    assert synthesis.end_time <= spans["chorus.settlement"][0].start_time  # the stages do not overlap


async def test_a_debate_has_a_span_per_round_with_its_agreement_and_echoes(exporter):
    fake, req = refusing_debate()
    spans, error = await traced(exporter, req, fake, embedder=HashEmbedder())
    assert error is None
    rounds = sorted(spans["chorus.round"], key=lambda s: s.attributes["chorus.round"])
    assert [r.attributes["chorus.round"] for r in rounds] == [1, 2]
    assert all(0 <= r.attributes["chorus.agreement"] <= 1 for r in rounds)
    assert [e.attributes["chorus.reason"] for e in rounds[1].events] == ["refusal"]
    assert len(spans["chorus.member"]) == 6 and spans["chorus.run"][0].attributes["chorus.rounds"] == 2


async def test_a_missed_quorum_ends_the_run_span_with_an_error(exporter):
    fake = FakeCompleter()
    for m in ("model-a", "model-b"):
        fake.enqueue(m, UpstreamError("timeout", "deadline exceeded"))
    spans, error = await traced(exporter, request(), fake)
    assert error is not None
    run = spans["chorus.run"][0]
    assert run.status.status_code == StatusCode.ERROR and run.attributes["chorus.outcome"] == "quorum_failed"
    assert run.attributes["http.response.status_code"] == 502 and run.parent is None
    assert len(spans["chorus.member"]) == 3 and "chorus.judge" not in spans


async def test_without_an_sdk_nothing_is_recorded():
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("42."))
    spans = RunSpans(request(), None)  # the API's default provider: non-recording spans
    async for _ in pipeline.run(context(request(), fake, log=RunLog(spans, watched=False))):
        pass
    assert spans.run is not None and not spans.run.is_recording() and spans.rounds == {}
