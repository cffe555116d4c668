"""Budgets: a run's worst-case cost, admitted against the caller's LiteLLM budgets before
any panel member is called, and the cost cap that stops a run early.

The worst case prices every call the run may make at its largest: each seat writes
`panel.max_tokens` (else the model's own output limit, else `limits.assumed_max_tokens`)
in every round or layer, a later round reads what the earlier ones wrote, the judge
writes `judge_max_tokens`, and the synthesizer writes the client's `max_tokens` (else
its model's limit). Prompts are counted with each model's tokenizer and priced from
the Router's deployment prices, like every call the ledger records. The judge step counts
twice (one repair of invalid JSON). Not counted: the per-search fee some providers add
to a call with `web_search_options` (LiteLLM prices it into the call's actual cost).

With a cost cap (`limits.max_cost_usd`, `chorus.max_cost_usd`) no new step starts once
the run has spent the cap, so the worst case is the cap plus the dearest single step.

The run is refused when that worst case is more than what is left of any budget LiteLLM
holds on the caller (key, team, user; `Caller.budgets`), with LiteLLM's own message.
The cost actually spent is charged once, as always (gateway/provider.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import BudgetError
from ..types import Budget, BudgetReport

if TYPE_CHECKING:
    from ..context import RunContext

# Per call: the instructions and framing a stage adds around the conversation (the
# judge's rubric, a debate round's voices, a persona), in tokens, generously.
OVERHEAD_TOKENS = 600
# panel.web_search: the sources one answer cites, as the judge reads them.
SOURCES_TOKENS = 300


@dataclass(frozen=True)
class Estimate:
    """USD. `steps`: each step's worst cost in run order (a round or layer, the judge,
    the synthesis); `spent`: what the run had spent when it was estimated (the gate)."""

    steps: tuple[tuple[str, float], ...]
    spent: float = 0.0
    cap: float | None = None
    full: float = field(init=False)
    worst: float = field(init=False)

    def __post_init__(self) -> None:
        full = self.spent + sum(cost for _, cost in self.steps)
        dearest = max((cost for _, cost in self.steps), default=0.0)
        object.__setattr__(self, "full", full)
        object.__setattr__(self, "worst", full if self.cap is None else min(full, self.cap + dearest))

    def as_dict(self) -> BudgetReport:
        return {"worst_case_usd": round(self.worst, 8), "uncapped_usd": round(self.full, 8), "max_cost_usd": self.cap,
                "steps": [{"step": name, "usd": round(cost, 8)} for name, cost in self.steps]}


def worst_case(ctx: RunContext) -> Estimate:
    """The run's worst case (module docstring), for the seats already drawn."""
    completer, profile, preset = ctx.completer, ctx.profile, ctx.preset
    agg, limits = profile.aggregator, profile.limits
    prompt: dict[str, int] = {}

    def read(model: str) -> int:  # the conversation, in this model's tokens, plus framing
        if model not in prompt:
            prompt[model] = completer.estimate(model, ctx.messages, "").usage.prompt_tokens + OVERHEAD_TOKENS
        return prompt[model]

    def writes(model: str, cap: int | None) -> int:
        return cap or completer.max_output_tokens(model) or limits.assumed_max_tokens

    def call(model: str, extra_in: int, out: int) -> float:
        return completer.price(model, read(model) + extra_in, out)

    seats = [s.model for s in ctx.seats]
    draft = {m: writes(m, ctx.panel.max_tokens) for m in seats}
    drafts = sum(draft[m] for m in seats)  # everything the panel may write in one round
    final = writes(agg.synthesizer, _client_max_tokens(ctx.final_params))

    def round_cost(extra_in: int) -> float:
        return sum(call(m, extra_in, draft[m]) for m in seats)

    steps: list[tuple[str, float]] = [("panel round 1", round_cost(0))]
    if preset.protocol == "consensus":
        steps.append(("critiques", round_cost(drafts)))
        steps.append(("candidate", call(agg.synthesizer, 2 * drafts, final)))
        for n in range(1, preset.max_rounds + 1):
            steps.append((f"vote {n}", round_cost(final)))
            if n < preset.max_rounds:
                steps.append((f"revision {n}", call(agg.synthesizer, final + drafts, final)))
        return Estimate(tuple(steps), ctx.report.cost, ctx.req.max_cost_usd)
    if preset.protocol == "debate":
        # A later round shows each seat its own answer and at most two others'.
        steps += [(f"debate round {n}", round_cost(3 * max(draft.values())))
                  for n in range(2, preset.max_rounds + 1)]
    else:
        steps += [(f"layer {n}", round_cost(drafts)) for n in range(2, agg.layers + 1)]
    # The judge reads length-normalized answers (plus each one's cited sources), and may be
    # asked once more to repair invalid JSON.
    judged = min(drafts, agg.judge_input_chars // 3) + (SOURCES_TOKENS * len(seats) if ctx.panel.web_search else 0)
    steps.append(("judge", 2 * call(agg.judge, judged, agg.judge_max_tokens)))
    steps.append(("synthesis", call(agg.synthesizer, drafts + agg.judge_max_tokens, final)))
    return Estimate(tuple(steps), ctx.report.cost, ctx.req.max_cost_usd)


def _client_max_tokens(params: dict) -> int | None:
    value = params.get("max_completion_tokens") or params.get("max_tokens")
    return int(value) if isinstance(value, int | float) and value > 0 else None


def short_of(estimate: Estimate, budgets: tuple[Budget, ...]) -> Budget | None:
    """The caller's budget the worst case does not fit in (the tightest), else None."""
    short = [b for b in budgets if estimate.worst > b.left]
    return min(short, key=lambda b: b.left) if short else None


def admit(ctx: RunContext) -> Estimate | None:
    """Raise `BudgetError` when the run's worst case does not fit the caller's budgets;
    returns the estimate (None when the caller has no budget and the run no cap)."""
    budgets = ctx.req.caller.budgets
    if not budgets and ctx.req.max_cost_usd is None:
        return None
    estimate = worst_case(ctx)
    budget = short_of(estimate, budgets)
    if budget is not None:
        raise BudgetError(message(budget, estimate))
    return estimate


def message(budget: Budget, estimate: Estimate) -> str:
    """LiteLLM's own wording (its budget reservation's), naming the run's worst case."""
    who = {"key": "Key", "team": "Team", "user": "User"}[budget.scope]
    return (f"Budget has been exceeded! {who}={budget.id} Current cost: {budget.spend}, Estimated request cost: "
            f"{estimate.worst:.6f}, Max budget: {budget.max_budget}. This fusion run's worst case ("
            + ", ".join(f"{name} {cost:.6f}" for name, cost in estimate.steps)
            + ") is more than the budget left; lower panel.max_tokens, max_tokens or debate rounds, or set "
              "chorus.max_cost_usd")


def over_cap(ctx: RunContext) -> bool:
    """Whether the run has spent its cost cap (then it starts no new step)."""
    cap = ctx.req.max_cost_usd
    return cap is not None and ctx.report.cost >= cap

