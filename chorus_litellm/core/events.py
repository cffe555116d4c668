"""The run's events: one typed family, each created once and seen by every subscriber.

Every event is a frozen dataclass whose `kind` is its type on the wire; `data()` is its
JSON payload, as the event log stores it and the live view reads it (docs/live-view.md).
`Event` is the union, discriminated on `kind` (the shape of pydantic-ai's stream events).

Who creates them and who sees them:

- The pipeline yields its own events (`pipeline.run`): the client's `Progress`,
  `AnswerDelta`, `Relay` and `RunDone`, and the stage marks between them (`Routed`,
  `JudgeDone`, `SynthesisStarted`, ...). Its outer loop hands each to the run's
  `runlog.RunLog` before passing it on, so the provider's client stream is one more
  subscriber: it turns the client kinds into OpenAI chunks and ignores the rest.
- Stages and protocols emit the events that happen inside a step (an answer arriving
  mid-round, a round's measures, a consensus candidate) with `ctx.emit(event)`, which
  hands them to the same `RunLog`.
- `RunLog` numbers them and passes each (as a `RunEvent` envelope: seq, kind, time,
  data, and the event itself) to its listeners: the live view's store writer, metrics,
  spans, webhooks. The client-only kinds (`CLIENT_ONLY`) are not numbered or logged.

Nothing here does I/O; payloads are built from the run's nouns (core/runlog.py's builders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import runlog
from .types import (
    Completion,
    EarlyStopSummary,
    PanelAnswer,
    PanelFailure,
    QuorumFallback,
    Route,
    Seat,
    Settlement,
    Verdict,
)

if TYPE_CHECKING:
    from .report import RunReport
    from .request import FusionRequest


@dataclass(frozen=True)
class Progress:
    """A stage update, shown to streaming clients as reasoning_content (never logged)."""

    stage: str
    text: str
    kind: Literal["progress"] = "progress"

    def data(self) -> dict:
        return {"stage": self.stage, "text": self.text}


@dataclass(frozen=True)
class AnswerDelta:
    """A piece of the final answer, as the synthesizer writes it (the log coalesces them)."""

    text: str
    kind: Literal["answer_delta"] = "answer_delta"

    def data(self) -> dict:
        return {"text": self.text}


@dataclass(frozen=True)
class Relay:
    """A forwarded model's own response or stream chunk, relayed untouched (a LiteLLM
    type; never logged: its text reaches the log as the forward leg's `AnswerDelta`)."""

    item: Any
    kind: Literal["relay"] = "relay"

    def data(self) -> dict:
        return {}


@dataclass(frozen=True)
class RunStarted:
    req: FusionRequest
    seats: list[Seat]
    kind: Literal["run_started"] = "run_started"

    def data(self) -> dict:
        return runlog.started(self.req, self.seats)


@dataclass(frozen=True)
class Routed:
    route: Route
    kind: Literal["route"] = "route"

    def data(self) -> dict:
        return runlog.routed(self.route)


@dataclass(frozen=True)
class Seated:
    """The seats drawn from a pool for this run."""

    pool: str
    live: int
    seats: list[Seat]
    kind: Literal["seated"] = "seated"

    def data(self) -> dict:
        return {"pool": self.pool, "live": self.live, "seats": runlog.seated(self.seats)}


@dataclass(frozen=True)
class RoundStarted:
    round: int
    stage: str
    seats: list[str]
    kind: Literal["round_started"] = "round_started"

    def data(self) -> dict:
        return {"round": self.round, "stage": self.stage, "seats": list(self.seats)}


@dataclass(frozen=True)
class Answered:
    """One seat's result in one round, as it arrives; `echo`: the watchdog's reason to set
    an answer already shown aside (sent again, status `echo`)."""

    result: PanelAnswer | PanelFailure
    round: int
    echo: str | None = None
    kind: Literal["answer"] = "answer"

    def data(self) -> dict:
        payload = runlog.answer(self.result, self.round)
        return runlog.echo(payload, self.echo) if self.echo else payload


@dataclass(frozen=True)
class EarlyStop:
    """Round 1 stopped after its first wave: the vote was settled (`summary`: seats asked
    and saved, the cost saved; panel.early_stop_summary)."""

    round: int
    summary: EarlyStopSummary
    kind: Literal["early_stop"] = "early_stop"

    def data(self) -> dict:
        return {"round": self.round, **self.summary}


@dataclass(frozen=True)
class RoundDone:
    """A round's measures. A field a round has no measure for stays None or empty (a
    critique round has no map, and a viewer keeps the points it has)."""

    round: int
    agreement: float | None = None
    answer_agreement: float | None = None
    agreed: bool | None = None
    shift: float | None = None
    clusters: list = field(default_factory=list)
    consensus: str | None = None
    dissent: str | None = None
    filtered: dict = field(default_factory=dict)
    flips: list = field(default_factory=list)
    vote: dict | None = None
    votes: dict | None = None
    candidate: int | None = None
    links: list = field(default_factory=list)
    points: list = field(default_factory=list)
    kind: Literal["round_done"] = "round_done"

    def data(self) -> dict:
        out = {name: getattr(self, name) for name in ROUND_FIELDS}
        return out if self.agreed is None else {**out, "agreed": self.agreed}


ROUND_FIELDS = ("round", "agreement", "answer_agreement", "shift", "clusters", "consensus", "dissent", "filtered",
                "flips", "vote", "votes", "candidate", "links", "points")


def ballots(cast: dict[str, dict | None], standing: dict[str, dict] | None = None) -> dict[str, dict]:
    """A consensus vote round's `votes`: each seat's ballot as the page shows it. `cast`:
    the votes read this round (None: unreadable, so skipped); `standing`: earlier votes
    that still count (dissenters mode), marked `cast: false`."""
    def one(vote: dict | None, was_cast: bool) -> dict:
        if vote is None:
            return {"accept": None, "confidence": None, "objection": "unreadable vote (skipped)", "blocking": [],
                    "cast": was_cast}
        return {"accept": bool(vote["accept"]), "confidence": vote.get("confidence"),
                "objection": vote.get("objection") or "", "blocking": list(vote.get("blocking") or []),
                "cast": was_cast}
    out = {name: one(v, False) for name, v in (standing or {}).items() if name not in cast}
    return {**out, **{name: one(v, True) for name, v in cast.items()}}


def candidate_point(round_no: int, version: int, xyz: Any, similarity: dict[str, float]) -> dict:
    """A consensus candidate on the map (seat `synthesizer`), in the vote round that voted
    on it; `similarity`: its cosine to each seat's draft."""
    x, y, z = (round(float(v), 4) for v in xyz)
    return {"seat": "synthesizer", "round": round_no, "x": x, "y": y, "z": z, "cluster": -1, "centrality": 0.0,
            "voice": None, "echo": False, "kind": "candidate", "version": version,
            "similarity": {seat: round(float(s), 4) for seat, s in similarity.items()}}


@dataclass(frozen=True)
class QuorumLost:
    """Round 1 missed its quorum and `panel.on_quorum_failure` answers instead:
    `single_model` (router.single_model's own answer) or `best_answer` (the best of the
    `answered` that came back). The run goes on, marked degraded."""

    fallback: str
    answered: int
    required: int
    failures: tuple[PanelFailure, ...]
    answered_by: str | None = None  # router.single_model's name, or the best answer's seat
    kind: Literal["quorum_lost"] = "quorum_lost"

    def data(self) -> QuorumFallback:
        return {"fallback": self.fallback, "answered": self.answered, "required": self.required,
                "failed": [f.as_dict() for f in self.failures], "answered_by": self.answered_by}

    def text(self) -> str:
        by = f" ({self.answered_by})" if self.answered_by else ""
        instead = (f"the single model{by} answers instead" if self.fallback == "single_model"
                   else f"the best answer that came back{by} stands")
        failed = "".join(f"; {f.seat.name} {f.kind}" for f in self.failures)
        return f"Panel quorum lost: {self.answered} answered, {self.required} required{failed}. Degraded: {instead}."


@dataclass(frozen=True)
class CandidateStarted:
    version: int
    stage: str
    model: str
    kind: Literal["candidate_started"] = "candidate_started"

    def data(self) -> dict:
        return {"version": self.version, "stage": self.stage, "model": self.model}


@dataclass(frozen=True)
class CandidateDone:
    """A consensus candidate written (`completion`), or its failed call (`error`)."""

    version: int
    stage: str
    model: str
    completion: Completion | None = None
    error: Any = None  # UpstreamError
    kind: Literal["candidate_done"] = "candidate_done"

    def data(self) -> dict:
        return runlog.candidate(self.version, self.stage, self.model, self.completion, self.error)


@dataclass(frozen=True)
class JudgeDone:
    verdict: Verdict
    duration_s: float
    kind: Literal["judge_done"] = "judge_done"

    def data(self) -> dict:
        return runlog.judged(self.verdict, self.duration_s)


@dataclass(frozen=True)
class SynthesisStarted:
    model: str
    kind: Literal["synthesis_started"] = "synthesis_started"

    def data(self) -> dict:
        return {"model": self.model}


@dataclass(frozen=True)
class AnswerReplaced:
    """The vote guard set the synthesis aside: the seat's draft is the answer, and why."""

    seat: str
    reason: str
    kind: Literal["answer_replaced"] = "answer_replaced"

    def data(self) -> dict:
        return {"seat": self.seat, "reason": self.reason}


@dataclass(frozen=True)
class SynthesisDone:
    attempts: int
    cut: bool
    fallback: bool
    error: str | None
    kind: Literal["synthesis_done"] = "synthesis_done"

    def data(self) -> dict:
        return {"attempts": self.attempts, "cut": self.cut, "fallback": self.fallback, "error": self.error}


@dataclass(frozen=True)
class Settled:
    settlement: Settlement
    receipt: dict[str, Any] | None
    kind: Literal["settled"] = "settled"

    def data(self) -> dict:
        return runlog.settled(self.settlement, self.receipt)


@dataclass(frozen=True)
class RunDone:
    """The run's end, with its report: the client's last event and the log's terminal one."""

    report: RunReport
    kind: Literal["run_done"] = "run_done"

    def data(self) -> dict:
        return runlog.done(self.report)


@dataclass(frozen=True)
class Replayed:
    """A retried debate_id's first run, replayed from the store (`record`: its stored
    answer, usage and `chorus` field) to the client; never logged (the first run was)."""

    record: dict
    kind: Literal["replayed"] = "replayed"

    def data(self) -> dict:
        return {}


@dataclass(frozen=True)
class RunFailed:
    """The error the client got, what the run had cost and where."""

    error: BaseException
    cost: float
    stages: dict
    kind: Literal["run_failed"] = "run_failed"

    def data(self) -> dict:
        return {**runlog.failed(self.error), "cost": self.cost, "stages": self.stages}


Event = (Progress | AnswerDelta | Relay | RunStarted | Routed | Seated | RoundStarted | Answered | EarlyStop
         | RoundDone | QuorumLost | CandidateStarted | CandidateDone | JudgeDone | SynthesisStarted | AnswerReplaced
         | SynthesisDone | Settled | RunDone | Replayed | RunFailed)
CLIENT_ONLY = runlog.CLIENT_ONLY  # kinds only the client reads: not numbered, not logged
# What a streaming client is sent (the provider's subscriber).
CLIENT_KINDS = frozenset({"progress", "answer_delta", "relay", "run_done", "replayed"})
