"""The nouns of a fusion run. Plain frozen dataclasses: no I/O, no LiteLLM types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

Message = dict[str, Any]


# The JSON summaries a run reports in its `chorus` field (RunReport), typed per key.
class EarlyStopSummary(TypedDict):
    """`chorus.deliberation.early_stop`: round 1's seats asked and saved by the first wave."""

    asked: int
    saved: int
    saved_seats: list[str]
    cost_saved_usd: float


class DeliberationSummary(TypedDict, total=False):
    """`chorus.deliberation`: what the protocol did (keys beyond rounds and stop_reason
    depend on the protocol: debate, consensus, council, moa layers)."""

    rounds: int
    stop_reason: str | None
    answer_from: str  # the seat whose draft stands in for the synthesis
    panel_vote: dict[str, Any]  # extract.panel_vote: the answer most members state, its share
    early_stop: EarlyStopSummary
    # debate
    consensus_confidence: float
    vote: dict[str, Any] | None
    minority: list[str]
    flips: list[dict[str, Any]]
    embedding_model: str | None
    token_budget_exceeded: bool
    cost_cap_reached: bool
    pruned: dict[str, dict[str, Any]]  # seat -> {"round", "reason"}
    stats: list[dict[str, Any]]
    # consensus
    reached: bool
    votes: list[dict[str, Any]]
    # council
    ballots: int
    unreadable_ballots: int
    ranking: list[dict[str, Any]]
    # moa layers
    layers: int
    answer_agreement_by_layer: list[dict[str, Any]]


class QuorumFallback(TypedDict):
    """`chorus.quorum_fallback`: how a lost quorum was answered (`panel.on_quorum_failure`)."""

    fallback: str
    answered: int
    required: int
    failed: list[dict[str, Any]]
    answered_by: str | None  # who answers instead: router.single_model's name, or the best answer's seat


class BudgetReport(TypedDict, total=False):
    """`chorus.budget`: the admitted worst case (none when no budget applied), and where a
    cost cap stopped the run."""

    worst_case_usd: float
    uncapped_usd: float
    max_cost_usd: float | None
    steps: list[dict[str, Any]]
    stopped: str
    spent_usd: float


class Settlement(TypedDict):
    """`chorus.settlement`: the bounty's fate: `settled` with its receipt and payouts, or
    `unsettled` with the reason nothing was paid."""

    status: Literal["settled", "unsettled"]
    debate_id: str
    bounty: dict[str, Any]
    error: NotRequired[str]
    receipt_id: NotRequired[str]
    key_id: NotRequired[str]
    unallocated: NotRequired[int]
    payouts: NotRequired[list[dict[str, Any]]]
    duplicate: NotRequired[bool]
    receipt_url: NotRequired[str]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """One finished inner call, as the LLM adapter reports it."""

    text: str
    model: str
    usage: Usage = Usage()
    cost: float = 0.0
    latency_s: float = 0.0
    finish_reason: str | None = None
    # Tool calls the model made (OpenAI shape: id, type, function {name, arguments}); only
    # the synthesizer of a `router.tools: fuse` profile is offered the client's tools.
    tool_calls: tuple[dict, ...] = ()
    # Sources the model cited (web search: its `url_citation` annotations), {url, title}.
    citations: tuple[dict, ...] = ()
    # Upstream calls this answer took: more than 1 when LiteLLM's Router retried it (the
    # stages that retry themselves send num_retries=0, so theirs are always 1).
    attempts: int = 1


@dataclass(frozen=True)
class Budget:
    """One of LiteLLM's budgets on the caller (its key, team or user): spent and maximum, USD."""

    scope: Literal["key", "team", "user"]
    id: str | None
    spend: float
    max_budget: float

    @property
    def left(self) -> float:
        return self.max_budget - self.spend


@dataclass(frozen=True)
class Caller:
    """Who made the request (LiteLLM key metadata); owner of everything the run stores."""

    key_hash: str | None = None
    key_alias: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    org_id: str | None = None
    budgets: tuple[Budget, ...] = ()  # as LiteLLM's auth saw them when the request came in


@dataclass(frozen=True)
class Route:
    decision: Literal["fuse", "single"]
    policy: str
    reason: str
    score: float | None = None
    classifier_score: float | None = None


@dataclass(frozen=True)
class Seat:
    """A place on the panel: a model with its sampling settings."""

    name: str
    model: str
    temperature: float | None = None
    persona: str | None = None  # a persona name (stages/prompts.PERSONAS or the profile's)
    payee: str | None = None  # who is paid for this seat; None means "model:<model>"
    peer: str | None = None  # the marketplace peer (its key id) holding a pool seat

    @property
    def payee_id(self) -> str:
        return self.payee or f"model:{self.model}"

    @property
    def scored_as(self) -> str:
        """Whose reputation this seat's work counts toward: the peer's own, else the payee's."""
        return self.peer or self.payee_id


@dataclass(frozen=True)
class PanelAnswer:
    seat: Seat
    completion: Completion


@dataclass(frozen=True)
class PanelFailure:
    seat: Seat
    kind: str  # timeout | http_error | content_filter | empty | connection | cancelled | error
    detail: str
    status: int | None = None
    latency_s: float = 0.0

    def as_dict(self) -> dict:
        """As `chorus.panel.failed` and the `quorum_lost` event list it."""
        return {"seat": self.seat.name, "model": self.seat.model, "kind": self.kind, "status": self.status,
                "detail": self.detail}

    def describe(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self.seat.name} ({self.seat.model}): {self.kind}{status}: {self.detail}"


@dataclass(frozen=True)
class Panel:
    answers: tuple[PanelAnswer, ...]
    failures: tuple[PanelFailure, ...]
    saved: tuple[Seat, ...] = ()  # not asked: the first wave had settled the vote (panel.early_stop)


@dataclass(frozen=True)
class SeatResult:
    """What one seat did in one round: answered (used or filtered as an echo) or failed.

    Every deliberation records one per seat per round, so settlement and reputation see
    seats that failed or echoed in any round, not only the survivors of the last one."""

    seat: Seat
    round: int
    text: str = ""
    failure: PanelFailure | None = None
    echo: str | None = None  # why the watchdog filtered the answer
    pruned: str | None = None  # why the seat was pruned for the rest of the run (a streak)

    @property
    def reason(self) -> str | None:
        """Why this result is not usable, or None."""
        if self.failure is not None:
            return self.failure.kind
        if self.pruned:
            return f"pruned: {self.pruned}"
        return f"echo: {self.echo}" if self.echo else None


@dataclass(frozen=True)
class Outcome:
    """The common result of every deliberation protocol (moa, debate, consensus).

    `panel` holds the answers the judge and synthesizer work from; `history` every seat's
    result in every round; `answer` is set when the protocol already wrote the final
    answer (consensus, or a debate stopped by its token budget), so judge and synthesis
    are skipped."""

    panel: Panel
    history: tuple[SeatResult, ...]
    minority: tuple[str, ...] = ()
    answer: str | None = None
    answer_source: str | None = None  # the seat whose answer stands in, if not synthesized
    summary: DeliberationSummary | None = None  # protocol summary for the `chorus.deliberation` field
    transcript: list | None = None  # per-round display records (audit mode)
    verdict: Verdict | None = None  # the protocol's own verdict (council: the ranks), in place of the judge's

    def last_results(self) -> dict[str, SeatResult]:
        """Each seat's latest result: where it stood when the run ended."""
        latest: dict[str, SeatResult] = {}
        for result in self.history:
            latest[result.seat.name] = result
        return latest


@dataclass(frozen=True)
class Point:
    claim: str
    support: tuple[str, ...]  # seat names (de-anonymized)


@dataclass(frozen=True)
class Analysis:
    consensus: tuple[Point, ...] = ()
    contradictions: tuple[Point, ...] = ()
    unique_insights: tuple[Point, ...] = ()
    blind_spots: tuple[str, ...] = ()
    best: str | None = None  # seat name of the best-supported answer

    def as_dict(self) -> dict[str, Any]:
        def points(items: tuple[Point, ...]) -> list[dict]:
            return [{"claim": p.claim, "support": list(p.support)} for p in items]

        return {"consensus": points(self.consensus), "contradictions": points(self.contradictions),
                "unique_insights": points(self.unique_insights), "blind_spots": list(self.blind_spots),
                "best": self.best}


@dataclass(frozen=True)
class Verdict:
    """The judge's result. `analysis` is None on the degraded path."""

    analysis: Analysis | None
    completions: tuple[Completion, ...]
    degraded: bool = False
    error: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # label -> seat name
    labelled: tuple[tuple[str, str], ...] = ()  # (label, trimmed answer) as the judge saw them
    raw: dict | None = None  # the validated analysis in label form (what the synthesizer sees)
    attempts: int = 1  # judge calls made: a retry of a failed call or a JSON repair makes 2


@dataclass(frozen=True)
class Synthesis:
    text: str
    completion: Completion | None
    fallback: bool = False
    fallback_source: str | None = None
    error: str | None = None
    attempts: int = 1  # synthesizer calls made, each one upstream call (2: the first failed and was retried)
    cut: bool = False  # the synthesizer's stream broke after its first words: `text` is incomplete

    @property
    def tool_calls(self) -> tuple[dict, ...]:
        """The client's tools the synthesizer called (router.tools: fuse): the answer is these."""
        return self.completion.tool_calls if self.completion is not None else ()
