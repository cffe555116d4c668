"""What a run did and cost: usage summed over every stage, and the client-facing summary.

`RunReport.extension()` is the `chorus` field that rides with the response (OpenAI
clients ignore unknown fields). Its `cost.total` is exactly what the caller is charged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .types import (
    BudgetReport,
    Caller,
    Completion,
    DeliberationSummary,
    EarlyStopSummary,
    Outcome,
    Panel,
    QuorumFallback,
    Route,
    Settlement,
    Synthesis,
    Usage,
    Verdict,
)


@dataclass(frozen=True)
class Call:
    stage: str  # classifier | forward | panel | debate | critique | vote | candidate | judge | synthesis
    seat: str
    completion: Completion
    status: str = "ok"  # ok | partial | cancelled | timeout (the ledger's word for how it ended)
    estimated: bool = False  # usage and cost estimated (the call never reported its own)


@dataclass
class RunReport:
    run_id: str
    profile: str
    caller: Caller
    route: Route | None = None
    panel: Panel | None = None
    verdict: Verdict | None = None
    synthesis: Synthesis | None = None
    calls: list[Call] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    protocol: str = "moa"
    deliberation: DeliberationSummary | None = None  # the protocol's summary
    transcript: list[list[dict[str, Any]]] | None = None  # debate: every agent's answer per round (audit mode)
    settlement: Settlement | None = None  # receipt id and payout summary, when a bounty was paid
    receipt: dict[str, Any] | None = None  # the full signed receipt (audit mode; always retrievable)
    outcome: Outcome | None = None  # what the deliberation produced, every round's seats included
    request_hash: str | None = None  # what the run answered (idempotency checks)
    notes: list[str] = field(default_factory=list)  # what went wrong but did not fail the run
    budget: BudgetReport | None = None  # the admitted worst case, and where a cost cap stopped the run
    early_stop: EarlyStopSummary | None = None  # panel.early_stop: round 1's seats asked and saved, and the cost saved
    quorum_fallback: QuorumFallback | None = None  # panel.on_quorum_failure answered a lost quorum (QuorumLost.data())
    relayed: bool = False  # the answer is the single model's own response, relayed as it came (the forward leg)

    def add(self, stage: str, seat: str, completion: Completion, *, status: str = "ok",
            estimated: bool = False) -> None:
        self.calls.append(Call(stage, seat, completion, status, estimated))

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.completion.usage
        return total

    @property
    def cost(self) -> float:
        return sum(call.completion.cost for call in self.calls)

    def by_stage(self) -> dict[str, dict]:
        stages: dict[str, dict] = {}
        for call in self.calls:
            entry = stages.setdefault(call.stage, {"cost": 0.0, **Usage().as_dict(), "calls": 0})
            entry["calls"] += 1
            entry["cost"] += call.completion.cost
            for key, value in call.completion.usage.as_dict().items():
                entry[key] += value
        return stages

    def degraded(self) -> list[str]:
        """The stages that fell back: `quorum` (round 1 lost its quorum and
        `panel.on_quorum_failure` answered), `panel` (a member failed), `judge` (no valid
        analysis), `synthesis` (a draft stood in for the synthesized answer), and
        `synthesis_cut` (the synthesizer's stream broke after its first words: the answer
        is incomplete; `synthesis.error` says why)."""
        stages = ["quorum"] if self.quorum_fallback is not None else []
        if self.panel is not None and self.panel.failures:
            stages.append("panel")
        if self.verdict is not None and self.verdict.degraded:
            stages.append("judge")
        if self.synthesis is not None and self.synthesis.fallback:
            stages.append("synthesis")
        if self.cut:
            stages.append("synthesis_cut")
        return stages

    @property
    def cut(self) -> bool:
        """The answer sent is the synthesizer's, cut off mid-stream (a draft that stood in
        for it, e.g. by the vote guard, is whole)."""
        return self.synthesis is not None and self.synthesis.cut and not self.synthesis.fallback

    def finish_reason(self) -> Literal["stop", "length", "tool_calls"]:
        """The fused answer's OpenAI finish_reason: `tool_calls` when the synthesizer called
        the client's tools; `length` when the answer is incomplete (its stream was cut,
        or the synthesizer stopped at max_tokens), the value OpenAI clients check for a
        truncated answer; else `stop`."""
        synthesis = self.synthesis
        if synthesis is None:
            return "stop"
        if synthesis.tool_calls:
            return "tool_calls"
        capped = synthesis.completion is not None and synthesis.completion.finish_reason == "length"
        if self.cut or (capped and not synthesis.fallback):
            return "length"
        return "stop"

    def debug_text(self) -> str:
        """A readable run summary, appended to the answer in output_mode `debug`."""
        lines = [f"chorus {self.profile} ({self.protocol}), route: "
                 f"{self.route.decision if self.route else '-'}"]
        if self.panel is not None:
            failed = ", ".join(f"{f.seat.name} ({f.kind})" for f in self.panel.failures) or "none"
            lines.append(f"panel: {len(self.panel.answers)} answered; failed: {failed}")
        if self.deliberation:
            d = self.deliberation
            lines.append(f"deliberation: {d['rounds']} round(s), stop: {d['stop_reason']}, "
                         f"consensus confidence {d.get('consensus_confidence', '-')}")
            if d.get("panel_vote"):
                v = d["panel_vote"]
                lines.append(f"  panel vote: {v['answer']} ({v['share']:.0%} of {v['voters']} stating one)")
            for s in d.get("stats", []):
                lines.append(f"  round {s['round']}: agreement {s['agreement']}, shift {s['shift']}, "
                             f"consensus {s['consensus']}, dissent {s['dissent']}, filtered {s['filtered'] or '-'}")
        if self.verdict is not None:
            lines.append("judge: " + ("degraded: " + str(self.verdict.error) if self.verdict.degraded else "ok"))
        if self.synthesis is not None and self.synthesis.fallback:
            lines.append(f"answer: fallback to {self.synthesis.fallback_source}")
        if self.cut:
            lines.append(f"answer: cut off ({self.synthesis.error if self.synthesis else None})")
        u = self.usage
        lines.append(f"usage: {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens, "
                     f"cost {self.cost:.6f} USD over {len(self.calls)} calls")
        return "\n".join(lines)

    def extension(self, *, include_panel: bool = False, audit: bool = False) -> dict:
        route = self.route
        ext: dict = {
            "id": self.run_id,
            "profile": self.profile,
            # The caller's own team and user, as LiteLLM authenticated them (never the key).
            "caller": {"team_id": self.caller.team_id, "user_id": self.caller.user_id},
            "route": route and {
                "decision": route.decision, "policy": route.policy, "reason": route.reason,
                "score": route.score, "classifier_score": route.classifier_score,
            },
            "usage": {
                "total": self.usage.as_dict(),
                "stages": self.by_stage(),
                "calls": [
                    {"stage": c.stage, "seat": c.seat, "model": c.completion.model,
                     **c.completion.usage.as_dict(), "cost": c.completion.cost,
                     "latency_s": round(c.completion.latency_s, 4), "status": c.status,
                     **({"estimated": True} if c.estimated else {}),
                     # upstream calls behind this one when LiteLLM's Router retried it
                     **({"attempts": c.completion.attempts} if c.completion.attempts != 1 else {})}
                    for c in self.calls
                ],
            },
            "cost": {"total": self.cost, "currency": "USD"},
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.panel is not None:
            ext["panel"] = {
                "answered": [a.seat.name for a in self.panel.answers],
                "failed": [f.as_dict() for f in self.panel.failures],
            }
        if self.verdict is not None:
            ext["judge"] = {"degraded": self.verdict.degraded, "error": self.verdict.error,
                            "attempts": self.verdict.attempts}
        if self.synthesis is not None:
            ext["synthesis"] = {
                "fallback": self.synthesis.fallback,
                "fallback_source": self.synthesis.fallback_source,
                "error": self.synthesis.error,
                "attempts": self.synthesis.attempts,
                "cut": self.cut,
                **({"tool_calls": list(self.synthesis.tool_calls)} if self.synthesis.tool_calls else {}),
            }
        if self.settlement is not None:
            ext["settlement"] = self.settlement
        if self.notes:
            ext["notes"] = list(self.notes)
        if self.budget is not None:
            ext["budget"] = dict(self.budget)
        ext["degraded"] = self.degraded()
        if self.quorum_fallback is not None:
            ext["quorum_fallback"] = dict(self.quorum_fallback)
        if self.deliberation is not None:
            ext["deliberation"] = {"protocol": self.protocol, **self.deliberation}
        if audit:
            ext["transcript"] = {
                "rounds": self.transcript,
                "panel": {a.seat.name: a.completion.text for a in self.panel.answers} if self.panel else None,
                "judge": self.verdict.raw if self.verdict else None,
                "answer": self.synthesis.text if self.synthesis else None,
                "receipt": self.receipt,
            }
        if include_panel and self.panel is not None:
            ext["panel"]["answers"] = {a.seat.name: a.completion.text for a in self.panel.answers}
            if self.verdict is not None and self.verdict.analysis is not None:
                ext["judge"]["analysis"] = self.verdict.analysis.as_dict()
        return ext
