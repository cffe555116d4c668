"""Profile configuration: the `model_info.chorus` block of each `fusion/<profile>` entry.

Frozen pydantic models with `extra="forbid"`, so a typo is an error, not a silent default.
`load_profiles()` validates a whole LiteLLM config at startup and raises one `ConfigError`
with every problem it found, a line each naming the profile and the field, e.g.
``profile 'research': panel.min_quorum: 4 is more than the 3 seats``.
No I/O here except `read_config_file`, which only parses YAML.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

log = logging.getLogger("chorus_litellm")

PROVIDER = "fusion"  # the provider name when the config names none (the examples' `fusion/<profile>`)
HANDLER_MODULE = "chorus_litellm"  # a custom_provider_map entry whose custom_handler starts with it is ours
# Model strings LiteLLM itself reserves for its own fusion (PR 39224, unreleased in 1.109):
# `litellm/fusion-1` (provider `litellm`) and proxy entries `model: fusion_router[/...]`.
NATIVE_FUSION = ("fusion_router", "litellm")


class _Strict(BaseModel):
    # allow_inf_nan=False: YAML's .inf/.nan are floats, and an infinite cap is no cap.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _refuse(problems: list[str]) -> None:
    """A cross-field validator's problems, all at once: one "field: message" line each."""
    if problems:
        raise ValueError("\n".join(problems))


class ClassifierConfig(_Strict):
    """Optional small model consulted only when the cheap score is near the threshold."""

    model: str
    # A classifier call sits on the critical path of every ambiguous prompt: keep it short.
    timeout_s: float = Field(5.0, gt=0, le=120)
    # Cheap scores within +-band of the threshold are "unsure" and go to the classifier;
    # 0.15 sends roughly the middle third of the score range, where features disagree.
    band: float = Field(0.15, ge=0, le=1)


class RouterConfig(_Strict):
    # consult: single_model answers with a private `consult_panel` tool beside the client's;
    # the panel runs only when it calls it (core/stages/consult.py).
    policy: Literal["always_fuse", "never_fuse", "auto", "consult"] = "always_fuse"
    single_model: str | None = None
    # Score in [0, 1]; prompts scoring >= threshold are fused. 0.5 is the midpoint of the
    # feature scale (docs/config.md explains the features).
    threshold: float = Field(0.5, ge=0, le=1)
    classifier: ClassifierConfig | None = None
    # A turn with tools (the client's `tools`, or tool calls and results in the
    # conversation): `forward` sends it to single_model as it is; `fuse` fuses it, and
    # only the synthesizer is offered the client's tools (docs/tools.md).
    tools: Literal["forward", "fuse"] = "forward"

    @model_validator(mode="after")
    def _needs_single_model(self) -> RouterConfig:
        if self.policy != "always_fuse" and not self.single_model:
            raise ValueError(f"single_model: required when policy is {self.policy!r}")
        return self


class MemberConfig(_Strict):
    """One panel seat: a model (a `model_name` from model_list), a persona, sampling."""

    model: str
    # Seat id shown in metadata and usage; defaults to the model name (#n when repeated).
    name: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    # A built-in persona (skeptic, optimist, analyst, contrarian) or one from `personas`.
    persona: str | None = None
    # Who is paid for this seat's contributions (the peer hosting the model); default
    # "model:<model>".
    payee: str | None = None


class SelfMoAConfig(_Strict):
    """Sample one strong model N times (Self-MoA, arXiv 2502.00674) instead of mixing models."""

    model: str
    samples: int = Field(4, ge=2, le=16)
    # Temperatures are spread evenly over [min, max] so samples differ but stay on topic.
    # 0.3-0.7: model cards recommend 0.2-0.7; above that a small model rambles (SmolLM2-135M
    # at 0.7-0.8 lost a 3-sample vote on sums it answers right at 0.2: docs/design.md).
    temperature_min: float = Field(0.3, ge=0, le=2)
    temperature_max: float = Field(0.7, ge=0, le=2)
    payee: str | None = None  # default "model:<model>"

    @model_validator(mode="after")
    def _ordered(self) -> SelfMoAConfig:
        if self.temperature_min > self.temperature_max:
            raise ValueError("temperature_min: must be <= temperature_max")
        return self


class ReputationConfig(_Strict):
    """Use payees' reputation (core/stages/reputation.py) to order or filter the seats."""

    order: bool = False  # best-scoring seats first (first in line for the quorum)
    min_score: float | None = Field(None, ge=0, le=1)  # drop seats scoring below this...
    min_runs: int = Field(5, ge=1)  # ...once their payee has this many runs on record
    # Pool seats (select: reputation) kept for peers with fewer than min_runs runs, so new
    # peers earn a score: 0.2 is one seat in five (at least one while new peers exist).
    explore: float = Field(0.2, ge=0, le=1)


class EarlyStopConfig(_Strict):
    """Ask round 1 in waves and stop once its vote is settled (early-stopping
    self-consistency, arXiv 2401.10480: 34-80% fewer samples at comparable accuracy)."""

    # auto: only when the question has a short-answer form (a sum, a count, options,
    # yes/no, a short factual question: core/stages/extract.py), where a vote decides; a wave
    # that turns out open-ended asks the rest at once. on: every question. off: never.
    mode: Literal["auto", "on", "off"] = "auto"
    # Seats in the first wave; None: a majority of the seats (2 of 3, 3 of 5), the fewest
    # whose agreement no remaining seat can overturn.
    first_wave: int | None = Field(None, ge=1)


class PanelConfig(_Strict):
    members: tuple[MemberConfig, ...] = ()
    # router.tools: fuse: show the members the client's tool schemas (with tool_choice
    # "none": they answer in text); otherwise they see tool turns as plain text only.
    tools: bool = False
    # Members whose model supports it (LiteLLM's supports_web_search, or the deployment's
    # model_info.supports_web_search) get LiteLLM's `web_search_options`; the sources
    # they cite reach the judge under their answer's label.
    web_search: bool = False
    web_search_context: Literal["low", "medium", "high"] = "medium"
    self_moa: SelfMoAConfig | None = None
    # Marketplace seats (docs/peers.md): `seats` seats drawn per run from the live peers
    # of `pool`, beside any static `members`.
    pool: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    seats: int = Field(0, ge=0, le=32)
    # reputation: high scorers first, `reputation.min_score` as a floor, `reputation.explore`
    # of the seats for new peers; random; cheapest: lowest price per token first.
    select: Literal["reputation", "random", "cheapest"] = "reputation"
    # Pool seats' personas: rotate (round-robin over the profile's personas, else the
    # built-ins: distinct while there are enough), hash (a peer keeps one persona, chosen
    # by its id), or off. A peer only gets a persona it accepts.
    personas: Literal["rotate", "hash", "off"] = "rotate"
    # Seats one peer may hold in a run (1: never two seats on one peer); never more than
    # the peer's own max_concurrency.
    seats_per_peer: int = Field(1, ge=1, le=8)
    # None means "a majority of the seats" (2 of 3, 3 of 4): fusion of one answer is not fusion.
    min_quorum: int | None = Field(None, ge=1)
    # Per-member deadline. Hosted models answer long prompts in well under a minute.
    timeout_s: float = Field(60.0, gt=0, le=600)
    # Once the quorum has answered, stragglers get min(quorum_grace_s, quorum_grace_ratio x
    # the time the quorum took) more, then are cancelled. A member 20% behind the others is
    # worth waiting for; one 10x behind is not: the ratio bounds what a straggler adds to
    # the panel's latency at 20% (the benchmark's straggler target is 1.25x the floor),
    # and the absolute cap bounds it for very slow panels.
    quorum_grace_s: float = Field(2.0, ge=0, le=600)
    quorum_grace_ratio: float = Field(0.2, ge=0, le=10)
    # Panel answers are drafts; this caps them without ever touching the final answer.
    max_tokens: int | None = Field(None, ge=1)
    reputation: ReputationConfig = ReputationConfig()
    # When round 1 misses its quorum: error (a 502 naming every failed member), single_model
    # (router.single_model answers the request instead, its response relayed as the gate's
    # forward leg would), or best_answer (the best of the answers that did come back; an
    # error when none did). Either fallback is marked degraded (`chorus.quorum_fallback`,
    # the `quorum_lost` event), charged for every call made, and pays no failed seat.
    on_quorum_failure: Literal["error", "single_model", "best_answer"] = "error"
    # Round 1 in waves: more seats only while the vote on an extractable answer is open.
    early_stop: EarlyStopConfig = EarlyStopConfig()

    @field_validator("members", mode="before")
    @classmethod
    def _members_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple({"model": v} if isinstance(v, str) else v for v in value)
        return value

    @model_validator(mode="after")
    def _seats(self) -> PanelConfig:
        if not (self.members or self.self_moa or self.pool):
            raise ValueError("set members, self_moa or pool")  # nothing else to check without seats
        problems, seats = [], self.seat_count
        if self.self_moa and (self.members or self.pool):
            problems.append("self_moa: cannot be mixed with members or pool")
        if bool(self.pool) != bool(self.seats):
            problems.append("seats: pool seats need both pool and seats (1 or more)")
        if self.min_quorum is not None and self.min_quorum > seats:
            problems.append(f"min_quorum: {self.min_quorum} is more than the {seats} seats")
        if self.early_stop.first_wave is not None and self.early_stop.first_wave > seats:
            problems.append(f"early_stop.first_wave: {self.early_stop.first_wave} is more than the {seats} seats")
        names = [m.name for m in self.members if m.name]
        if len(names) != len(set(names)):
            problems.append("members: member names must be unique")
        _refuse(problems)
        return self

    @property
    def seat_count(self) -> int:
        return self.self_moa.samples if self.self_moa else len(self.members) + self.seats

    @property
    def quorum(self) -> int:
        return self.min_quorum if self.min_quorum is not None else self.seat_count // 2 + 1


class AggregatorConfig(_Strict):
    judge: str
    synthesizer: str
    # MoA layers (the Rust seed's aggregator.layers; Wang et al. 2024): each layer after the
    # first asks the panel again with the previous layer's answers as anonymized references;
    # the judge and the synthesis work on the last. Each layer costs a full panel round
    # and repeats a bad proposer's error to every seat, so one layer is the default
    # (docs/design.md has the figures).
    layers: int = Field(1, ge=1, le=4)
    anonymize_sources: bool = True
    # "auto" asks for response_format=json_object when LiteLLM says the model supports it.
    judge_response_format: Literal["auto", "json_object", "off"] = "auto"
    judge_timeout_s: float = Field(60.0, gt=0, le=600)
    # The analysis is a list of short points; 2048 tokens holds ~40 of them.
    judge_max_tokens: int = Field(2048, ge=64)
    # "full": consensus, contradictions, insights, blind spots and the best answer.
    # "minimal": only the best answer's label and the points all answers share, for small
    # models that cannot write the full analysis (docs/real-model.md has the measurements).
    judge_schema: Literal["full", "minimal"] = "full"
    synthesis_timeout_s: float = Field(120.0, gt=0, le=1800)
    # Length normalization: the judge sees at most this many characters of all answers
    # together, split evenly, so a verbose member cannot win by volume (~6k tokens).
    judge_input_chars: int = Field(24_000, ge=1000)
    # The synthesizer grading its own draft is self-preference bias; say so at startup.
    synthesizer_in_panel: Literal["allow", "warn", "error"] = "warn"
    # Where the panel's answers are extractable (a vote was taken): `synthesize` (judge and
    # writer, the writer held to a member's answer by the vote guard) or `vote` (the draft
    # that states the vote's answer is the answer: no judge, no writer, two calls fewer).
    # On SmolLM2-135M the writer cost Self-MoA 3 points against its own vote's draft
    # (docs/benchmarks.md); `synthesize` stays the default until a run measures `vote` whole.
    extractable: Literal["synthesize", "vote"] = "synthesize"


class EchoConfig(_Strict):
    """Echo watchdog thresholds (core/stages/echo.py explains the measurements)."""

    # Residual norm below 0.45 (cosine > 0.89 with the question): a restatement. On the
    # labelled corpus of benchmarks/embedder_agreement.py, real answers score >= 0.509
    # (MiniLM) and >= 0.516 (static), parrots <= 0.402 and <= 0.457: 0.45 never drops a
    # real answer under either model (dropping one costs more than keeping a parrot).
    parrot_residual: float = Field(0.45, ge=0, le=1)
    # Cosine >= 0.95 with an answer the agent was shown (plus 90% identical text): a copy.
    # Same corpus: copies score >= 0.978 (MiniLM) and >= 0.996 (static); paraphrases at
    # most 0.83 and 0.906.
    copy_similarity: float = Field(0.95, ge=0, le=1)
    # A seat the watchdog flags this many rounds in a row is pruned for the rest of the run
    # and loses its share of the bounty (the first seed's streak rule); 0: never pruned.
    # Two: one echo can be a fluke (a short answer to a short question), two in a row is
    # an agent that is not contributing.
    prune_after: int = Field(2, ge=0, le=10)


class DebateConfig(_Strict):
    """How the panel deliberates. `moa` is one layer (panel -> judge -> synthesis)."""

    protocol: Literal["moa", "debate", "consensus", "council"] = "moa"
    # debate: rounds in all, round 1 included; consensus: vote/revise loops. Three rounds
    # is where Du et al. saw most of the gain; more rounds mostly add conformity.
    max_rounds: int = Field(3, ge=1, le=10)
    strict_unanimity: bool = False  # consensus: unanimous acceptance instead of a majority
    # consensus: who votes again on a revised candidate. `all`: every seat, an unparseable
    # vote is a rejection. `dissenters` (the Go seed's loop): only seats that rejected,
    # listed blocking issues or voted with confidence under 0.75 vote again (the others'
    # votes stand); an unparseable vote is skipped, not counted; confidence is the best
    # approval rate over the rounds; without consensus the answer ends with a short
    # summary of the disagreement.
    revote: Literal["all", "dissenters"] = "all"
    max_total_tokens: int = Field(0, ge=0)  # 0 = unlimited; else stop early, best candidate
    # LiteLLM num_retries for panel/debate/consensus calls (the judge, synthesizer and
    # classifier retry themselves, once, inside the run's deadline).
    max_retries: int | None = Field(None, ge=0, le=10)
    output_mode: Literal["clean", "debug", "audit"] = "clean"
    dissent: bool = True  # inject the dissent voice next to the consensus voice
    # Which answers each agent sees next round: `shared` (everyone sees the consensus voice
    # and the dissent voice) or `per_agent` (each agent sees the answer nearest to its own
    # and, with `dissent`, the farthest: the first seed's voices). docs/simulation.md
    # measures both.
    voices: Literal["shared", "per_agent"] = "shared"
    # Stop early on round-1 agreement, unanimity or convergence. Off = fixed max_rounds
    # (a compute-matched baseline for comparisons; adaptive stopping beats fixed rounds).
    adaptive_stop: bool = True
    # Where answers have an extractable form (a number, an option, yes/no, a short fact:
    # core/stages/extract.py), a round agrees only when this share of its answers states the
    # leading answer, whatever their prose embeds to (texts that differ only in the final
    # claim sit at 0.98). 0.66: two of three, three of four; a 2-1 split is already
    # decided by the vote, and more rounds mostly add conformity (docs/design.md).
    answer_agreement: float = Field(0.66, gt=0, le=1)
    # Open-ended answers: mean pairwise cosine at which they "agree"; 0.85 means "saying the same thing".
    # On benchmarks/embedder_agreement.py's corpus no round with a dissenting answer
    # reaches it under either model (mixed pools: MiniLM <= 0.70, static <= 0.817); the
    # pools overlap below, so a lower value would stop rounds that still disagree.
    agreement: float = Field(0.85, ge=0, le=1)
    # Round-over-round centroid shift (1 - cosine) under which answers "stopped moving":
    # 0.02 is about the change from rewording the same answers.
    shift: float = Field(0.02, ge=0, le=1)
    # kNN graph edges below this cosine do not join clusters (on-topic but different).
    # Paraphrase and different-claim pairs overlap for both models (the same corpus); at
    # 0.75 the consensus voice made the majority claim on every question with either.
    link: float = Field(0.75, ge=0, le=1)
    # A static model distilled from the packaged MiniLM (gateway/embeddings.py); the
    # transformer itself is "packaged:all-MiniLM-L6-v2", or any sentence-transformers model.
    embedding_model: str = "static:all-MiniLM-L6-v2"
    echo: EchoConfig = EchoConfig()


class BountyConfig(_Strict):
    amount: int = Field(ge=0)  # integer minor units (cents for USD)
    currency: str = "USD"


class SettlementConfig(_Strict):
    # Paid when a request brings no bounty of its own; none by default.
    default_bounty: BountyConfig | None = None
    # The largest bounty a request may carry, in minor units ($100,000.00 for USD):
    # a guard against typos and abuse, not a business limit; raise it per profile.
    max_bounty: int = Field(10_000_000, ge=0)


class StorageConfig(_Strict):
    # Keep every fused run's transcript for its team (GET /chorus/v1/runs/{debate_id}).
    transcripts: bool = True
    # A week: long enough to debug last week's answer, short enough not to hoard prompts.
    transcript_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    # Keep every run's event log for its team, with the same TTL: the live view
    # (/chorus/ui/, GET /chorus/v1/runs/{debate_id}/events). A MoA round's map embeds its
    # answers beside the judge call.
    events: bool = True


class WebhooksConfig(_Strict):
    # A request may carry `callback_url` (POSTed the run summary, signed, after the run);
    # false refuses such requests with a 400.
    enabled: bool = True


class LimitsConfig(_Strict):
    # ~50k tokens of prompt; fusion multiplies the prompt by the panel size, so cap it.
    max_prompt_chars: int = Field(200_000, ge=1)
    max_messages: int = Field(256, ge=1)
    # One deadline for the whole run, every stage and round included (the client's own
    # `timeout`, if shorter, wins). 300 s lets a default MoA run (panel 60 + judge 60 +
    # synthesis 120) finish, and bounds a multi-round debate or consensus loop.
    run_timeout_s: float = Field(300.0, gt=0, le=3600)
    # A cost cap (USD; 0 = none): once the run has spent this much it takes no new step
    # (round, layer, judge, synthesis) and answers with the best answer so far.
    max_cost_usd: float = Field(0.0, ge=0)
    # Budget admission prices a call with no max_tokens at the model's own output limit
    # (LiteLLM's model info); this when that is unknown too.
    assumed_max_tokens: int = Field(4096, ge=1)


class ProfileConfig(_Strict):
    router: RouterConfig = RouterConfig()
    panel: PanelConfig
    aggregator: AggregatorConfig
    debate: DebateConfig = DebateConfig()
    # Custom personas: name -> system prompt. Built-ins: skeptic, optimist, analyst, contrarian.
    personas: dict[str, str] = {}
    settlement: SettlementConfig = SettlementConfig()
    storage: StorageConfig = StorageConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _sections_agree(self) -> ProfileConfig:
        from .stages.prompts import PERSONAS
        from .stages.bounty import CURRENCIES

        problems = []
        if self.router.tools == "fuse" and self.debate.protocol == "consensus":
            problems.append("router.tools: 'fuse' needs the moa or debate protocol: the consensus protocol's "
                            "answer is a voted candidate, which cannot be a tool call")
        if self.panel.on_quorum_failure == "single_model" and not self.router.single_model:
            problems.append("panel.on_quorum_failure: 'single_model' needs router.single_model")
        if self.panel.tools and self.router.tools != "fuse":
            problems.append("panel.tools: true needs router.tools: fuse (otherwise tool turns are forwarded)")
        if self.aggregator.layers > 1 and self.debate.protocol != "moa":
            problems.append(f"aggregator.layers: layers are the moa protocol's rounds; {self.debate.protocol!r} "
                            "has its own (debate.max_rounds)")
        bounty = self.settlement.default_bounty
        if bounty and bounty.currency not in CURRENCIES:
            problems.append(f"settlement.default_bounty.currency: {bounty.currency!r} is not a known ISO 4217 code")
        for i, member in enumerate(self.panel.members):
            if member.persona and member.persona not in PERSONAS and member.persona not in self.personas:
                known = ", ".join(sorted({*PERSONAS, *self.personas}))
                problems.append(f"panel.members[{i}].persona: {member.persona!r} is not one of: {known}")
        _refuse(problems)
        return self

    def referenced_models(self) -> dict[str, str]:
        """Every inner model this profile calls, keyed by the field that names it."""
        refs: dict[str, str] = {}
        if self.router.single_model:
            refs["router.single_model"] = self.router.single_model
        if self.router.classifier:
            refs["router.classifier.model"] = self.router.classifier.model
        for i, member in enumerate(self.panel.members):
            refs[f"panel.members[{i}].model"] = member.model
        if self.panel.self_moa:
            refs["panel.self_moa.model"] = self.panel.self_moa.model
        refs["aggregator.judge"] = self.aggregator.judge
        refs["aggregator.synthesizer"] = self.aggregator.synthesizer
        return refs


def field_path(loc: tuple) -> str:
    """A pydantic error location as the config spells it: `panel.members[1].model`."""
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif not str(part).startswith("function-after"):
            where += f".{part}" if where else str(part)
    return where


def _format_error(profile: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = field_path(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        # Cross-field validators name their fields: one "field: message" line per problem.
        for line in msg.splitlines() if err["type"] == "value_error" else [msg]:
            field, text = where, line
            if (m := re.match(r"^([\w.\[\]]+): (.*)$", line, re.DOTALL)) and err["type"] == "value_error":
                field, text = f"{where}.{m[1]}" if where else m[1], m[2]
            lines.append(f"profile {profile!r}: {field or '(profile)'}: {text}")
    return "\n".join(lines)


def parse_profile(name: str, raw: Any, *, known_models: set[str] | None = None, provider: str = PROVIDER,
                  fusion_models: frozenset[str] = frozenset()) -> ProfileConfig:
    """Validate one profile's `model_info.chorus` block. Raises ConfigError with every problem
    found, one line each. A model it names must not be a fusion model: `<provider>/...`, or an
    alias in `fusion_models`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"profile {name!r}: model_info.chorus must be a mapping")
    try:
        profile = ProfileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(name, exc)) from None
    problems = []
    for field, model in profile.referenced_models().items():
        if model.startswith(f"{provider}/") or model in fusion_models:
            problems.append(f"profile {name!r}: {field}: {model!r} is a fusion model; "
                            "profiles cannot call fusion models (recursion)")
        elif known_models is not None and model not in known_models:
            problems.append(f"profile {name!r}: {field}: {model!r} is not a model_name in model_list")
    members = {m.model for m in profile.panel.members}
    if profile.panel.self_moa:
        members.add(profile.panel.self_moa.model)
    if profile.aggregator.synthesizer in members:
        msg = (
            f"profile {name!r}: aggregator.synthesizer: {profile.aggregator.synthesizer!r} "
            "is also a panel member (self-preference bias)"
        )
        if profile.aggregator.synthesizer_in_panel == "error":
            problems.append(msg)
        elif profile.aggregator.synthesizer_in_panel == "warn":
            log.warning("%s; set aggregator.synthesizer_in_panel: allow to silence", msg)
    if problems:
        raise ConfigError("\n".join(problems))
    return profile


def profile_name(entry: dict, provider: str = PROVIDER) -> str | None:
    """The profile an entry of model_list defines, or None if it is not a fusion entry."""
    params = entry.get("litellm_params") or {}
    model = str(params.get("model", ""))
    return model.removeprefix(f"{provider}/") if model.startswith(f"{provider}/") else None


def provider_of(config: dict) -> str:
    """The provider name this plugin serves in a LiteLLM config: the `custom_provider_map`
    entry whose `custom_handler` is ours (`chorus_litellm.proxy_handler`); `fusion` when the
    config has none (SDK use with a dict). Profiles are the entries `<provider>/<profile>`."""
    settings = config.get("litellm_settings") or {}
    entries = (settings.get("custom_provider_map") or []) if isinstance(settings, dict) else []
    ours = sorted({str(e.get("provider")) for e in entries if isinstance(e, dict)
                   and str(e.get("custom_handler", "")).startswith(HANDLER_MODULE)})
    if len(ours) > 1:
        raise ConfigError(f"litellm_settings.custom_provider_map: chorus is registered under {len(ours)} provider "
                          f"names ({', '.join(ours)}); register it once and point every profile at it")
    if ours and not re.fullmatch(r"[a-z][a-z0-9_-]*", ours[0]):
        raise ConfigError(f"litellm_settings.custom_provider_map: provider {ours[0]!r}: use lower-case letters, "
                          "digits, '-' and '_' (it is the prefix of the profiles' model strings)")
    return ours[0] if ours else PROVIDER


def check_provider_name(config: dict, provider: str, is_builtin: Callable[[str], bool]) -> None:
    """Refuse a provider name LiteLLM would route elsewhere, and aliases two fusions claim.

    LiteLLM resolves a built-in provider before `custom_provider_map`: from 1.109 with a
    warning, before that silently (the handler is never called). LiteLLM's own fusion
    takes `litellm/...` and `fusion_router`; a `model_name` defined by a LiteLLM-native
    fusion entry and by a chorus profile would be load-balanced between the two.
    """
    if is_builtin(provider) or provider in NATIVE_FUSION:
        whose = "LiteLLM's own fusion" if provider in NATIVE_FUSION else "a built-in LiteLLM provider"
        raise ConfigError(
            f"litellm_settings.custom_provider_map: provider {provider!r} is {whose}, which handles "
            f"'{provider}/...' models instead of chorus (LiteLLM resolves built-in providers first). Rename it, "
            "e.g. provider: chorus, and set each profile's litellm_params.model to chorus/<profile>")
    entries = [e for e in config.get("model_list") or [] if isinstance(e, dict)]
    native = {str(e.get("model_name")) for e in entries
              if str((e.get("litellm_params") or {}).get("model", "")).split("/")[0] in NATIVE_FUSION}
    ours = {str(e.get("model_name")) for e in entries if profile_name(e, provider) is not None}
    if clash := sorted(native & ours):
        raise ConfigError(f"model_list: {', '.join(map(repr, clash))} is both a chorus profile ({provider}/...) and "
                          "a LiteLLM-native fusion model (fusion_router); give one of them another model_name")


def load_profiles(config: dict, *, is_builtin: Callable[[str], bool] | None = None) -> dict[str, ProfileConfig]:
    """Validate every `<provider>/*` entry of a LiteLLM config dict; returns profiles by
    name. With `is_builtin` (LiteLLM's provider names, gateway/compat.py) the provider
    name is checked too (`check_provider_name`). A ConfigError lists every problem found, in
    every profile, one line each."""
    entries = config.get("model_list") or []
    if not isinstance(entries, list):
        raise ConfigError("model_list must be a list")
    provider = provider_of(config)
    problems: list[str] = []  # all of them, every profile's too, so one `chorus check` lists them all
    if is_builtin is not None:
        try:
            check_provider_name(config, provider, is_builtin)
        except ConfigError as exc:
            problems.append(str(exc))
    names = {str(e.get("model_name")) for e in entries if isinstance(e, dict)}
    # Wildcard deployments ("openai/*") accept names we cannot enumerate.
    known = None if any("*" in n for n in names) else names
    fusion_models = frozenset(str(e.get("model_name")) for e in entries
                              if isinstance(e, dict) and profile_name(e, provider) is not None)
    profiles: dict[str, ProfileConfig] = {}
    for entry in entries:
        if not isinstance(entry, dict) or (name := profile_name(entry, provider)) is None:
            continue
        raw = (entry.get("model_info") or {}).get("chorus")
        if not name:
            problems.append(f"a fusion entry needs a profile name: litellm_params.model: {provider}/<profile>")
        elif raw is None:
            problems.append(f"profile {name!r}: model_info.chorus is missing")
        else:
            if name in profiles:
                log.info("profile %r defined by several entries; they must agree", name)
            try:
                profiles[name] = parse_profile(name, raw, known_models=known, provider=provider,
                                               fusion_models=fusion_models)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return profiles


def read_config_file(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data
