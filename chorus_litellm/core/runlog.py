"""The run's event log: what a viewer sees, emitted by the pipeline as it goes.

Every event is one of the typed family in core/events.py, created once: the pipeline yields
its own (its outer loop hands each here on its way to the client) and stages hand theirs
to `ctx.emit(event)`. A `RunLog` numbers them and passes each, as a `RunEvent` (sequence
number, kind, time, JSON payload, and the event itself), to every listener the provider
subscribed: the live view's store writer (`adapters/eventlog.EventLog`, batched off the
request path), Prometheus metrics, OpenTelemetry spans, webhooks. The client-only kinds
(`events.CLIENT_ONLY`: progress, relay) are not numbered or logged. A listener is a plain
synchronous callable that must be cheap; one that raises is logged and dropped, never
fails the run. Nothing here does I/O, and nothing in `stages/` knows who listens.

`watched` says whether a viewer reads the rich payloads (the round's map in embedding
space): stages skip that work when nobody renders it. Every other event is cheap and
always emitted.

Types, in the order a run emits them (payloads in docs/live-view.md; `seated` only for a
panel with pool seats: the seats as drawn for this run):

    run_started -> route -> [seated] -> [round_started -> answer ... -> [early_stop] -> round_done] per round
    -> judge_done -> synthesis_started -> [answer_replaced] -> answer_delta ... -> synthesis_done -> settled
    -> run_done
    (or run_failed at any point: the error the client got)

A consensus run has no judge and no synthesis: between its rounds the synthesizer writes
each candidate (`candidate_started` -> `candidate_done`), its vote rounds' `round_done`
carry the ballots, and the accepted (or last) candidate is the one `answer_delta`.

The synthesizer's pieces are coalesced into one `answer_delta` per `DELTA_WINDOW_S`, so
a long answer costs a few events a second, not one per token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RunError, UpstreamError
from .request import prompt_text
from .types import Completion, PanelAnswer, PanelFailure, Route, Seat, Settlement, Verdict

if TYPE_CHECKING:
    from .report import RunReport
    from .request import FusionRequest

TEXT_LIMIT = 2000  # an answer's text in its `answer` event
ANSWER_LIMIT = 20000  # the final answer in `run_done`
DELTA_WINDOW_S = 0.1
TERMINAL = ("run_done", "run_failed")
CLIENT_ONLY = frozenset({"progress", "relay", "replayed"})  # events.CLIENT_ONLY: what only a client reads
# Stop reasons that mean the panel agreed (debate: adaptive stop; consensus: the vote passed).
AGREED = frozenset({"agreed_in_round_1", "unanimous", "converged", "consensus"})

log = logging.getLogger("chorus_litellm")


@dataclass(frozen=True)
class RunEvent:
    """A logged event's envelope: what the store keeps and the live view reads, with the
    typed event it came from (None when read back from the store)."""

    seq: int
    type: str
    time: float
    data: dict
    event: Any = field(default=None, compare=False, repr=False)

    def envelope(self) -> dict:
        return {"seq": self.seq, "type": self.type, "time": self.time, "data": self.data}

    @classmethod
    def of(cls, envelope: dict) -> RunEvent:
        return cls(int(envelope["seq"]), envelope["type"], float(envelope["time"]), envelope["data"])


Listener = Callable[[RunEvent], None]


class RunLog:
    """The run's event sink: numbers events from 1 and passes each to every listener
    (none: events are dropped). `watched` defaults to "has listeners"."""

    def __init__(self, *listeners: Listener, watched: bool | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.listeners, self.clock = list(listeners), clock
        self.watched = bool(listeners) if watched is None else watched
        self.seq = 0
        self._delta: list[str] = []
        self._delta_since = 0.0

    def emit(self, event: Any) -> Any:
        """Log `event` (an events.Event); returns it, so a step can emit and yield one value."""
        if not self.listeners or event.kind in CLIENT_ONLY:
            return event
        if event.kind == "answer_delta":
            self._add_delta(event)
            return event
        self._flush_delta()
        self._send(event.kind, event.data(), event)
        return event

    def _add_delta(self, delta: Any) -> None:
        now = self.clock()
        if self._delta and now - self._delta_since >= DELTA_WINDOW_S:
            self._flush_delta()
        if not self._delta:
            self._delta_since = now
        self._delta.append(delta.text)

    def _flush_delta(self) -> None:
        if self._delta:
            text, self._delta = "".join(self._delta), []
            self._send("answer_delta", {"text": text}, None)

    def _send(self, type: str, data: dict, typed: Any) -> None:
        self.seq += 1
        event = RunEvent(self.seq, type, self.clock(), data, typed)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("chorus: run event listener %r failed; dropped for this run", listener)
                self.listeners.remove(listener)


# -- payloads built from the run's nouns (pure) ------------------------------------------
def clip(text: str, limit: int = TEXT_LIMIT) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def answer(result: PanelAnswer | PanelFailure, round_no: int) -> dict:
    """One seat's result in one round, as it arrives."""
    seat = result.seat
    if isinstance(result, PanelAnswer):
        c = result.completion
        text, truncated = clip(c.text)
        return {"round": round_no, "seat": seat.name, "model": seat.model, "status": "ok",
                "latency_s": round(c.latency_s, 4), "tokens": {"prompt": c.usage.prompt_tokens,
                                                               "completion": c.usage.completion_tokens},
                "cost": c.cost, "text": text, "truncated": truncated, "kind": None, "detail": None, "reason": None}
    status = "cancelled" if result.kind == "cancelled" else "failed"
    return {"round": round_no, "seat": seat.name, "model": seat.model, "status": status,
            "latency_s": round(result.latency_s, 4), "tokens": {"prompt": 0, "completion": 0}, "cost": 0.0,
            "text": "", "truncated": False, "kind": result.kind, "detail": result.detail[:500], "reason": None}


def candidate(version: int, stage: str, model: str, completion: Completion | None = None,
              error: UpstreamError | None = None) -> dict:
    """`candidate_done`: the consensus synthesizer's candidate `version` (stage `candidate`
    for the first, `revise` for a revision), or the failed call."""
    if completion is None:
        return {"version": version, "stage": stage, "model": model, "status": "failed", "latency_s": None,
                "tokens": {"prompt": 0, "completion": 0}, "cost": 0.0, "text": "", "truncated": False,
                "kind": error.kind if error else None, "detail": str(error)[:500] if error else None}
    text, truncated = clip(completion.text)
    return {"version": version, "stage": stage, "model": model, "status": "ok",
            "latency_s": round(completion.latency_s, 4),
            "tokens": {"prompt": completion.usage.prompt_tokens, "completion": completion.usage.completion_tokens},
            "cost": completion.cost, "text": text, "truncated": truncated, "kind": None, "detail": None}


def echo(answer_payload: dict, reason: str) -> dict:
    """The watchdog's verdict on an answer already sent: the same answer, status `echo`."""
    return {**answer_payload, "status": "echo", "reason": reason}


def judged(verdict: Verdict, duration_s: float) -> dict:
    a = verdict.analysis.as_dict() if verdict.analysis else {
        "consensus": [], "contradictions": [], "unique_insights": [], "blind_spots": [], "best": None}
    return {"degraded": verdict.degraded, "error": verdict.error, "consensus": a["consensus"],
            "contradictions": a["contradictions"], "insights": a["unique_insights"],
            "blind_spots": a["blind_spots"], "best": a["best"], "duration_s": round(duration_s, 4)}


def settled(settlement: Settlement, receipt: dict[str, Any] | None) -> dict:
    """The settlement with each payout split into its equal and impact parts."""
    parts = {c["seat"]: c for c in (receipt or {}).get("payload", {}).get("contributions", [])}
    return {
        "status": settlement.get("status"), "receipt_id": settlement.get("receipt_id"),
        "bounty": settlement.get("bounty"), "unallocated": settlement.get("unallocated"),
        "payouts": [{**p, "equal": parts.get(p["seat"], {}).get("equal_amount", 0),
                     "impact": parts.get(p["seat"], {}).get("impact_amount", 0)}
                    for p in settlement.get("payouts", [])],
        "receipt_url": settlement.get("receipt_url"), "error": settlement.get("error"),
    }


def started(req: FusionRequest, seats: list[Seat]) -> dict:
    bounty = {"amount": req.bounty[0], "currency": req.bounty[1]} if req.bounty else None
    return {"profile": req.profile_name, "profile_version": req.profile_version, "protocol": req.debate.protocol,
            "model": req.model, "prompt": clip(prompt_text(req.messages[-1:]))[0], "stream": req.stream,
            "quorum": req.quorum,
            "max_rounds": req.debate.max_rounds if req.debate.protocol != "moa" else req.profile.aggregator.layers,
            "bounty": bounty,
            "seats": seated(seats)}


def seated(seats: list[Seat]) -> list[dict]:
    return [{"seat": s.name, "model": s.model, "persona": s.persona, "payee": s.payee_id, "peer": s.peer}
            for s in seats]


def routed(route: Route) -> dict:
    return {"decision": route.decision, "policy": route.policy, "reason": route.reason, "score": route.score}


def done(report: RunReport) -> dict:
    """The run's end: its answer, usage and cost per stage and per seat, and timings."""
    seats: dict[str, dict] = {}
    for call in report.calls:
        entry = seats.setdefault(call.seat, {"calls": 0, "total_tokens": 0, "cost": 0.0})
        entry["calls"] += 1
        entry["total_tokens"] += call.completion.usage.total_tokens
        entry["cost"] += call.completion.cost
    synthesis = report.synthesis
    deliberation = report.deliberation or {}
    return {"answer": clip(synthesis.text if synthesis else "", ANSWER_LIMIT)[0], "usage": report.usage.as_dict(),
            "cost": report.cost, "stages": report.by_stage(), "seats": seats,
            "timings": {k: round(v, 4) for k, v in report.timings.items()},
            "rounds": deliberation.get("rounds", 1 if report.panel else 0),
            "stop_reason": deliberation.get("stop_reason"), "agreed": deliberation.get("stop_reason") in AGREED,
            "decision": report.route and report.route.decision,
            "fallback": bool(synthesis and synthesis.fallback), "degraded": report.degraded()}


def failed(exc: BaseException) -> dict:
    """The error the client got, as the provider maps it (adapters/provider.to_litellm_error)."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return {"status": 499, "error": {"type": "Cancelled", "message": "the client disconnected"}}
    if isinstance(exc, RunError) and exc.status_code != 500:
        return {"status": exc.status_code, "error": {"type": type(exc).__name__, "message": str(exc)}}
    return {"status": 500, "error": {"type": type(exc).__name__, "message": f"internal error: {exc}"}}


def outcome(type: str, data: dict) -> str:
    """A finished run's outcome from its terminal event: `ok`, `degraded`, `forwarded`,
    `quorum_failed`, `cancelled` (the client left) or `error`."""
    if type == "run_done":
        return "forwarded" if data["decision"] == "single" else "degraded" if data["degraded"] else "ok"
    if data["status"] == 499:
        return "cancelled"
    return "quorum_failed" if data["error"]["type"] == "QuorumError" else "error"


def summarize(events: list[dict], current: dict | None = None) -> dict:
    """The runs index entry (`GET /chorus/v1/runs`) after `events` (envelopes), starting
    from `current`: id-less fields a store keeps per run."""
    run = dict(current or {})
    for e in events:  # batches may arrive out of order (the outbox): never move backwards
        data, kind = e["data"], e["type"]
        run["updated"] = max(e["time"], run.get("updated") or 0.0)
        if kind == "run_started":
            run.setdefault("state", "running")
            run.update(started=e["time"], profile=data.get("profile"), profile_version=data.get("profile_version"),
                       protocol=run.get("protocol") or data.get("protocol"), model=data.get("model"),
                       prompt=data.get("prompt", "")[:200])
        elif kind == "route" and data.get("decision") == "single":
            run["protocol"] = "single"
        elif kind == "round_done":
            run["rounds"] = max(data.get("round") or 0, run.get("rounds") or 0)
        elif kind == "run_done":  # a consensus run's `rounds` counts its votes: keep the rounds seen
            counts = [n for n in (data.get("rounds"), run.get("rounds")) if n is not None]
            run.update(state="done", cost=data.get("cost"), rounds=max(counts) if counts else None)
        elif kind == "run_failed":
            run.update(state="failed", cost=data.get("cost", run.get("cost")))
    return run
