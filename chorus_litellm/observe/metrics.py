"""Prometheus metrics for fusion runs, served on the proxy's own `/metrics`.

Boundary: a listener of each run's events (core/runlog.py) that counts them into the
`chorus_*` series; it reads no request and does no I/O. The series live in
prometheus_client's default registry, which LiteLLM's `callbacks: ["prometheus"]` serves
at `/metrics`. With several workers LiteLLM sets `PROMETHEUS_MULTIPROC_DIR`: each worker
writes its samples to files there and `/metrics` sums them (`chorus_active_runs` counts
live workers only). The series are made on the first run, after that variable is set.

Every label has a bounded set of values: profile, protocol, outcome, router decision,
stage, token type, member model (from the config; every marketplace peer is `peer/*`, as
peers come and go), failure kind, echo reason, currency.
Never a run id or a key; payees only when the operator opts in
(`CHORUS_METRICS_PAYEE_LABEL=true`: one series per payee).

Outcomes: `ok`, `degraded` (a member failed, the judge or the synthesis fell back),
`forwarded` (the gate sent it to one model), `quorum_failed`, `cancelled` (the client
left), `error`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..market.peers import ROUTER_PREFIX
from ..core.runlog import Listener, RunEvent, outcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..core.request import FusionRequest

SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
ROUNDS = (1, 2, 3, 4, 5, 6, 8, 10)


@dataclass(frozen=True)
class Series:
    runs: Any
    decisions: Any
    stage_seconds: Any
    tokens: Any
    cost: Any
    active: Any
    rounds: Any
    agreed: Any
    member_failures: Any
    echoes: Any
    judge_degraded: Any
    synthesis_fallback: Any
    early_stop_seats: Any
    early_stop_saved_usd: Any
    bounty_paid: Any
    payee_label: bool

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None, *, payee_label: bool = False) -> Series:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["profile", *labels], registry=reg)

        return cls(
            counter("chorus_runs", "Fusion runs by outcome", "protocol", "outcome"),
            counter("chorus_router_decisions", "Router gate decisions (fuse or single)", "decision"),
            Histogram("chorus_stage_duration_seconds", "Wall time per run stage", ["profile", "stage"],
                      buckets=SECONDS, registry=reg),
            counter("chorus_tokens", "Tokens of every inner call, by stage", "stage", "type"),
            counter("chorus_cost_usd", "Cost charged for fusion runs (every inner call), USD"),
            Gauge("chorus_active_runs", "Runs in flight", ["profile"], multiprocess_mode="livesum", registry=reg),
            Histogram("chorus_rounds", "Deliberation rounds per fused run", ["profile"], buckets=ROUNDS,
                      registry=reg),
            counter("chorus_consensus_reached", "Runs whose panel agreed (adaptive stop or a passed vote)"),
            counter("chorus_member_failures", "Panel member calls that failed", "model", "kind"),
            counter("chorus_echo_filtered", "Answers the echo watchdog filtered", "reason"),
            counter("chorus_judge_degraded", "Runs whose judge analysis fell back"),
            counter("chorus_synthesis_fallback", "Runs whose answer is a panel draft, not a synthesis"),
            counter("chorus_early_stop_seats",
                    "Round-1 seats under panel.early_stop: asked, or saved by a settled vote", "kind"),
            counter("chorus_early_stop_saved_usd", "Estimated cost of the seats panel.early_stop did not ask, USD"),
            counter("chorus_bounty_paid_minor_units", "Bounty paid out, in minor units",
                    "currency", *(["payee"] if payee_label else [])),
            payee_label,
        )


_series: Series | None = None
_lock = threading.Lock()


def series() -> Series:
    """The process's series, made once (first run: PROMETHEUS_MULTIPROC_DIR is set by then)."""
    global _series
    with _lock:
        if _series is None:
            from ..settings import load_settings

            _series = Series.create(payee_label=load_settings(create_dirs=False).metrics_payee_label)
        return _series


def listener(req: FusionRequest) -> Listener:
    """The run's metrics listener (the provider subscribes one per run)."""
    return RunMetrics(series(), req.profile_name, req.debate.protocol)


class RunMetrics:
    def __init__(self, s: Series, profile: str, protocol: str) -> None:
        self.s, self.profile, self.protocol = s, profile, protocol

    def __call__(self, event: RunEvent) -> None:
        handler = getattr(self, "on_" + event.type, None)
        if handler is not None:
            handler(event.data)

    def on_run_started(self, data: dict) -> None:
        self.s.active.labels(self.profile).inc()

    def on_route(self, data: dict) -> None:
        self.s.decisions.labels(self.profile, data["decision"]).inc()

    def on_answer(self, data: dict) -> None:
        if data["status"] in ("failed", "cancelled"):
            model = "peer/*" if data["model"].startswith(ROUTER_PREFIX) else data["model"]
            self.s.member_failures.labels(self.profile, model, data["kind"] or "error").inc()
        elif data["status"] == "echo":
            self.s.echoes.labels(self.profile, data["reason"] or "unknown").inc()

    def on_early_stop(self, data: dict) -> None:
        self.s.early_stop_seats.labels(self.profile, "asked").inc(data["asked"])
        self.s.early_stop_seats.labels(self.profile, "saved").inc(data["saved"])
        self.s.early_stop_saved_usd.labels(self.profile).inc(data["cost_saved_usd"])

    def on_judge_done(self, data: dict) -> None:
        if data["degraded"]:
            self.s.judge_degraded.labels(self.profile).inc()

    def on_settled(self, data: dict) -> None:
        if data["status"] != "settled":
            return
        currency = (data.get("bounty") or {}).get("currency") or "unknown"
        for payout in data["payouts"]:
            labels = (self.profile, currency, *([payout["payee"]] if self.s.payee_label else []))
            self.s.bounty_paid.labels(*labels).inc(payout["amount"])

    def on_run_done(self, data: dict) -> None:
        if data["decision"] != "single":
            self.s.rounds.labels(self.profile).observe(data["rounds"])
            if data["agreed"]:
                self.s.agreed.labels(self.profile).inc()
            if data["fallback"]:
                self.s.synthesis_fallback.labels(self.profile).inc()
        for stage, seconds in data["timings"].items():
            self.s.stage_seconds.labels(self.profile, stage).observe(seconds)
        self._end(outcome("run_done", data), data["cost"], data["stages"])

    def on_run_failed(self, data: dict) -> None:
        self._end(outcome("run_failed", data), data.get("cost") or 0.0, data.get("stages") or {})

    def _end(self, result: str, cost: float, stages: dict[str, dict]) -> None:
        self.s.runs.labels(self.profile, self.protocol, result).inc()
        self.s.cost.labels(self.profile).inc(max(0.0, cost))
        for stage, usage in stages.items():
            self.s.tokens.labels(self.profile, stage, "prompt").inc(usage["prompt_tokens"])
            self.s.tokens.labels(self.profile, stage, "completion").inc(usage["completion_tokens"])
        self.s.active.labels(self.profile).dec()
