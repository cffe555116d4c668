"""OpenTelemetry spans for fusion runs: one per stage, built from the run's events.

Boundary: a listener of each run's events (core/runlog.py), written against `opentelemetry-api`
only. With no SDK configured the run span does not record and the listener stops at
once, so tracing costs nothing; with one (LiteLLM's `callbacks: ["otel"]`, or any
`TracerProvider` the operator sets) every run becomes a tree:

    chorus.run                      (child of LiteLLM's request span when there is one)
      chorus.gate                   decision, policy, reason, score
      chorus.forward                the gate's single model answered (forwarded runs)
      chorus.round                  per round: stage, seats, agreement, clusters, voices
        chorus.member               per seat and round: model, status, failure kind, tokens, cost
      chorus.judge                  degraded, best
      chorus.synthesis              model
      chorus.settlement             settle and store: status, receipt, bounty, payouts

Spans are made when their stage's event arrives, with the stage's own start and end
times (a member call's span starts `latency_s` before its answer arrived), so nothing
runs on the request path but a few attribute writes. A stage's end is its closing
event's stamp where there is one; a duration only fills in where there is none, and
every stage span ends by the run's end: a stage's timer starts before its opening
event is stamped, so stamp plus duration can overshoot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from ..core.runlog import Listener, RunEvent, outcome

if TYPE_CHECKING:
    from ..core.request import FusionRequest

TRACER = trace.get_tracer("chorus_litellm")


def listener(req: FusionRequest) -> Listener:
    """The run's span builder; its spans are children of `req.trace_parent` if set."""
    return RunSpans(req, req.trace_parent)


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _attrs(prefix: str, data: dict, *keys: str) -> dict[str, Any]:
    """The scalar fields of `data` as span attributes (None dropped: OTel refuses it)."""
    return {f"{prefix}.{k}": data[k] for k in keys if isinstance(data.get(k), str | int | float | bool)}


class RunSpans:
    def __init__(self, req: FusionRequest, parent: Any = None, tracer: Any = None) -> None:
        self.req, self.tracer = req, tracer or TRACER
        self.context = trace.set_span_in_context(parent) if parent is not None else None
        self.run: Any = None
        self.started = self.routed = 0.0
        self.synthesis_model = ""
        self.synthesis_ended: float | None = None
        self.ends_by: float | None = None  # the run's end, once known
        self.rounds: dict[int, tuple[Any, float]] = {}  # round -> (span, last answer time)
        self.synthesis_started: float | None = None
        self.settled: RunEvent | None = None

    def __call__(self, event: RunEvent) -> None:
        if self.run is not None and not self.run.is_recording():
            return  # no SDK: nothing to record
        handler = getattr(self, "on_" + event.type, None)
        if handler is not None:
            handler(event)

    def _child(self, name: str, start: float, parent: Any = None, **attributes: Any) -> Any:
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent or self.run),
                                 start_time=ns(start), attributes=attributes)

    def _span(self, name: str, start: float, end: float, parent: Any = None, **attributes: Any) -> None:
        if self.ends_by is not None:  # the run's end: no stage outlives its run
            start, end = min(start, self.ends_by), min(end, self.ends_by)
        self._child(name, start, parent, **attributes).end(end_time=ns(max(start, end)))

    def on_run_started(self, e: RunEvent) -> None:
        d = e.data
        self.run = self.tracer.start_span("chorus.run", context=self.context, start_time=ns(e.time), attributes={
            "chorus.debate_id": self.req.debate_id, "gen_ai.request.model": d["model"],
            **_attrs("chorus", d, "profile", "protocol", "stream", "quorum", "max_rounds"),
            "chorus.seats": len(d["seats"])})
        self.started = e.time

    def on_route(self, e: RunEvent) -> None:
        self._span("chorus.gate", self.started, e.time, **_attrs("chorus.route", e.data, "decision", "policy",
                                                                   "reason", "score"))
        self.routed = e.time

    def on_round_started(self, e: RunEvent) -> None:
        self._close_rounds()
        span = self._child("chorus.round", e.time, **{"chorus.round": e.data["round"],
                                                      "chorus.stage": e.data["stage"],
                                                      "chorus.seats": len(e.data["seats"])})
        self.rounds[e.data["round"]] = (span, e.time)

    def on_answer(self, e: RunEvent) -> None:
        d = e.data
        span, last = self.rounds.get(d["round"], (None, e.time))
        if span is None or not span.is_recording():
            return
        if d["status"] == "echo":
            span.add_event("chorus.echo", {"chorus.seat": d["seat"], "chorus.reason": d["reason"] or ""},
                           timestamp=ns(e.time))
            return
        self.rounds[d["round"]] = (span, max(last, e.time))
        member = self._child("chorus.member", e.time - d["latency_s"], span, **{
            **_attrs("chorus", d, "seat", "model", "status", "kind", "cost", "round"),
            "gen_ai.request.model": d["model"], "gen_ai.usage.input_tokens": d["tokens"]["prompt"],
            "gen_ai.usage.output_tokens": d["tokens"]["completion"]})
        if d["status"] != "ok":
            member.set_status(Status(StatusCode.ERROR, f"{d['kind']}: {d['detail']}"))
        member.end(end_time=ns(e.time))

    def on_round_done(self, e: RunEvent) -> None:
        span, _last = self.rounds.pop(e.data["round"], (None, 0.0))
        if span is None:
            return
        d = e.data
        span.set_attributes({**_attrs("chorus", d, "agreement", "shift", "consensus", "dissent"),
                             "chorus.clusters": len(d["clusters"]), "chorus.filtered": len(d["filtered"])})
        span.end(end_time=ns(e.time))

    def _close_rounds(self) -> None:
        """A round whose map is measured off the critical path ends at its last answer."""
        for span, last in self.rounds.values():
            span.end(end_time=ns(last))
        self.rounds.clear()

    def on_judge_done(self, e: RunEvent) -> None:
        self._close_rounds()
        self._span("chorus.judge", e.time - e.data["duration_s"], e.time,
                   **_attrs("chorus.judge", e.data, "degraded", "error", "best"))

    def on_synthesis_started(self, e: RunEvent) -> None:
        self._close_rounds()
        self.synthesis_started = e.time
        self.synthesis_model = e.data["model"]

    def on_synthesis_done(self, e: RunEvent) -> None:
        self.synthesis_ended = e.time

    def on_settled(self, e: RunEvent) -> None:
        self.settled = e

    def on_run_done(self, e: RunEvent) -> None:
        d, timings = e.data, e.data["timings"]
        self._close_rounds()
        self.ends_by = e.time
        if d["decision"] == "single" and "forward" in timings:
            self._span("chorus.forward", self.routed, self.routed + timings["forward"])
        if self.synthesis_started is not None:
            ended = self.synthesis_ended or self.synthesis_started + timings["synthesis"]
            self._span("chorus.synthesis", self.synthesis_started, ended,
                       **{"gen_ai.request.model": self.synthesis_model, "chorus.fallback": d["fallback"]})
        end = self.settled.time if self.settled else e.time
        settled = self.settled.data if self.settled else {}
        self._span("chorus.settlement", end - timings.get("settlement", 0.0), end,
                   **_attrs("chorus.settlement", settled, "status", "receipt_id", "error"),
                   **({"chorus.settlement.payouts": len(settled["payouts"])} if settled else {}))
        self._end(e, outcome("run_done", d), d["cost"], d["usage"],
                  **_attrs("chorus", d, "rounds", "stop_reason", "agreed"))

    def on_run_failed(self, e: RunEvent) -> None:
        self._close_rounds()
        d = e.data
        self.run.set_status(Status(StatusCode.ERROR, f"{d['error']['type']}: {d['error']['message']}"))
        usage = {"prompt_tokens": sum(s["prompt_tokens"] for s in (d.get("stages") or {}).values()),
                 "completion_tokens": sum(s["completion_tokens"] for s in (d.get("stages") or {}).values())}
        self._end(e, outcome("run_failed", d), d.get("cost") or 0.0, usage,
                  **{"http.response.status_code": d["status"]})

    def _end(self, e: RunEvent, result: str, cost: float, usage: dict, **attributes: Any) -> None:
        self.run.set_attributes({"chorus.outcome": result, "chorus.cost_usd": cost,
                                 "gen_ai.usage.input_tokens": usage["prompt_tokens"],
                                 "gen_ai.usage.output_tokens": usage["completion_tokens"], **attributes})
        self.run.end(end_time=ns(e.time))
