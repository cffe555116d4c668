"""Validate a client's request at the edge and turn it into a `FusionRequest`.

Every problem is a `RequestError` (HTTP 400) that names the offending field, in the
style of OpenAI's own errors. Pure: takes the messages and params LiteLLM hands us.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import PROVIDER, DebateConfig, ProfileConfig, parse_profile
from .errors import ConfigError, RequestError
from .types import Caller, Message

# Content part types a text panel can read. Images and audio would reach only some members.
TEXT_PARTS = {"text"}
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# Sampling params forwarded to the panel and the synthesizer.
SAMPLING = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "user", "reasoning_effort")
# Params only the final answer honours (the panel's drafts have their own limits and
# are free text; the synthesizer writes the JSON a response_format asks for).
FINAL_ONLY = ("max_tokens", "max_completion_tokens", "stop", "response_format")
# Params a fused answer cannot honour: refused with a 400 rather than silently dropped.
REFUSED = {
    "logprobs": "a fused answer is written from several models' drafts; no one model's log-probabilities describe it",
    "top_logprobs": "a fused answer has no single model's log-probabilities",
    "logit_bias": "token ids differ between the panel's models",
    "modalities": "fusion profiles answer in text only",
    "audio": "fusion profiles answer in text only",
    "prediction": "predicted outputs need one model writing the whole answer",
}
TOOL_PARAMS = ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls")
# With router.tools: fuse, the synthesizer's alone (and the panel's with panel.tools).
FUSED_TOOLS = ("tools", "tool_choice", "parallel_tool_calls")
# A run id is a store key, a URL path segment and the `x-chorus-debate-id` header's value:
# 1-128 ASCII letters, digits, `.`, `_`, `:` or `-` (nothing a header or a path must escape).
DEBATE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_debate_id(value: object) -> bool:
    """Whether `value` is a valid run id (the one rule for `chorus.debate_id`)."""
    return isinstance(value, str) and DEBATE_ID.fullmatch(value) is not None


def run_id(chosen: object, call_id: object) -> str | None:
    """The run's id, the one rule the request, the provider and the response header share:
    the client's `chorus.debate_id` (`chosen`) when it is valid, else (none chosen)
    LiteLLM's call id. None when the chosen id is not valid (the request is refused with a
    400 naming `chorus.debate_id`, and no header repeats it) or there is no id at all."""
    if chosen is not None:
        return chosen if is_debate_id(chosen) else None  # type: ignore[return-value]
    return str(call_id) if call_id else None


class RunOptions(BaseModel):
    """Per-request options, sent as `{"chorus": {...}}` in the body (openai: extra_body)."""

    # allow_inf_nan=False: JSON's 1e309 parses to inf (and Python's json takes Infinity, NaN).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    policy: Literal["always_fuse", "never_fuse", "auto", "consult"] | None = None
    # Raise (never lower) the profile's quorum for this request.
    min_quorum: int | None = Field(None, ge=1)
    # Add the panel answers, judge analysis and timings to the `chorus` extension field.
    include_panel: bool = False
    # Debate presets, within the profile's limits (see effective_debate).
    max_rounds: int | None = Field(None, ge=1)
    strict_unanimity: bool | None = None
    max_total_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)  # at most the profile's limits.max_cost_usd
    output_mode: Literal["clean", "debug", "audit"] | None = None
    # A client-chosen debate id (per team): a retried request reuses it and is never
    # paid twice. Default: LiteLLM's call id. The rule: DEBATE_ID.
    debate_id: str | None = None
    # A duplicate of a `debate_id` whose first run is still in progress waits for it and
    # replays its answer (True), or gets a 409 with Retry-After at once (False).
    wait: bool = True
    # This request's own panel (model names, or {model, persona}) and writers, in place of
    # the profile's: models the caller's key may call (the provider checks with LiteLLM's
    # own access rules), never more seats than the profile has, never a fusion model.
    panel: tuple[str | dict[str, Any], ...] | None = Field(None, min_length=1)
    judge: str | None = Field(None, min_length=1)
    synthesizer: str | None = Field(None, min_length=1)

    @field_validator("debate_id")
    @classmethod
    def _debate_id(cls, value: str | None) -> str | None:
        if value is not None and not is_debate_id(value):
            raise ValueError("must be 1-128 characters, each an ASCII letter, digit, '.', '_', ':' or '-'")
        return value


@dataclass(frozen=True)
class FusionRequest:
    profile_name: str
    profile: ProfileConfig
    messages: list[Message]
    params: dict[str, Any]  # everything the client sent besides messages
    options: RunOptions
    caller: Caller
    stream: bool = False
    request_id: str = ""
    forward_reason: str | None = None  # set when the request must go to single_model as is
    sampling: dict[str, Any] = field(default_factory=dict)
    final_params: dict[str, Any] = field(default_factory=dict)
    debate: DebateConfig = field(default_factory=DebateConfig)
    bounty: tuple[int, str] | None = None  # (minor units, ISO 4217 currency)
    owner: str | None = None  # who owns what the run stores (team or key); None: nothing readable is kept
    trace_parent: Any = field(default=None, compare=False, repr=False)  # LiteLLM's request span (opaque)
    callback_url: str | None = None  # POSTed the run's summary when it ends (observe/webhooks.py)
    provider: str = PROVIDER  # the custom_provider_map name the proxy serves profiles under
    profile_version: int = 0  # a stored profile's version (core/profiles.py); 0: the config file's

    @property
    def model(self) -> str:
        """The fusion model's own name, `<provider>/<profile>` (responses, errors, events)."""
        return f"{self.provider}/{self.profile_name}"

    @property
    def debate_id(self) -> str:
        """The run's id: the client's `chorus.debate_id`, else LiteLLM's call id (`run_id`)."""
        return run_id(self.options.debate_id, self.request_id) or self.request_id

    @property
    def quorum(self) -> int:
        return max(self.profile.panel.quorum, self.options.min_quorum or 0)

    @property
    def max_cost_usd(self) -> float | None:
        """The run's cost cap: the profile's and the request's, the lower; None: no cap."""
        caps = [c for c in (self.profile.limits.max_cost_usd, self.options.max_cost_usd) if c]
        return min(caps) if caps else None


def _text_of(message: Message, index: int) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise RequestError(f"messages[{index}].content must be a string or a list of parts", param="messages")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS:
            raise RequestError(
                f"messages[{index}].content[{j}]: unsupported content part type {kind!r}; "
                "fusion profiles accept text parts only",
                param="messages",
            )
        texts.append(str(part.get("text") or ""))
    return "".join(texts)


def validate_messages(messages: Any, profile: ProfileConfig) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    limits = profile.limits
    if len(messages) > limits.max_messages:
        raise RequestError(
            f"{len(messages)} messages is more than this profile's limit of {limits.max_messages}",
            param="messages",
        )
    size = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(f"messages[{i}] must be an object", param="messages")
        if message.get("role") not in ROLES:
            raise RequestError(f"messages[{i}].role {message.get('role')!r} is not valid", param="messages")
        size += len(_text_of(message, i))
    if size > limits.max_prompt_chars:
        raise RequestError(
            f"the prompt has {size} characters, more than this profile's limit of "
            f"{limits.max_prompt_chars}",
            param="messages",
        )
    if not any(m.get("role") == "user" for m in messages):
        raise RequestError("messages must contain at least one user message", param="messages")
    return messages


def uses_tools(messages: list[Message], params: dict[str, Any]) -> bool:
    if any(params.get(k) for k in TOOL_PARAMS):
        return True
    return any(m.get("role") in ("tool", "function") or m.get("tool_calls") or m.get("function_call") for m in messages)


def parse_options(raw: Any) -> RunOptions:
    if raw is None:
        return RunOptions()
    if not isinstance(raw, dict):
        raise RequestError("chorus must be an object", param="chorus")
    try:
        return RunOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(p) for p in err["loc"])
        raise RequestError(f"chorus.{field_name}: {err['msg']}", param=f"chorus.{field_name}") from None


def requested_profile(name: str, profile: ProfileConfig, options: RunOptions, *, provider: str = PROVIDER,
                      fusion_models: frozenset[str] = frozenset()) -> ProfileConfig:
    """The profile with the request's `chorus.panel`, `chorus.judge` and
    `chorus.synthesizer` in place of its own, validated exactly as the config is. The
    panel's members replace the profile's members (or its self-MoA samples); pool seats
    stay, and the total may not exceed the profile's seat count."""
    if options.panel is None and options.judge is None and options.synthesizer is None:
        return profile
    raw = profile.model_dump(exclude_unset=True)
    panel, aggregator = dict(raw.get("panel") or {}), dict(raw.get("aggregator") or {})
    if options.panel is not None:
        seats = len(options.panel) + profile.panel.seats
        if seats > profile.panel.seat_count:
            raise RequestError(f"chorus.panel: {seats} seats are more than this profile's {profile.panel.seat_count}",
                               param="chorus.panel")
        panel["members"] = list(options.panel)
        panel.pop("self_moa", None)
    for writer, model in (("judge", options.judge), ("synthesizer", options.synthesizer)):
        if model is not None:
            aggregator[writer] = model
    try:
        return parse_profile(name, {**raw, "panel": panel, "aggregator": aggregator}, provider=provider,
                             fusion_models=fusion_models)
    except ConfigError as exc:  # one line per problem, named as the config names it
        raise RequestError("; ".join(line.removeprefix(f"profile {name!r}: ") for line in str(exc).splitlines()),
                           param="chorus.panel" if options.panel is not None else "chorus") from None


def requested_models(options: RunOptions) -> dict[str, str]:
    """The models this request names itself, keyed by the field that names them."""
    members = {f"chorus.panel[{i}]": m if isinstance(m, str) else str(m.get("model"))
               for i, m in enumerate(options.panel or ())}
    writers = {f"chorus.{f}": m for f in ("judge", "synthesizer") if (m := getattr(options, f)) is not None}
    return {**members, **writers}


def effective_debate(profile: ProfileConfig, options: RunOptions) -> DebateConfig:
    """The profile's debate preset with the request's overrides, never past its limits."""
    preset = profile.debate
    if options.max_rounds is not None and options.max_rounds > preset.max_rounds:
        raise RequestError(
            f"chorus.max_rounds: {options.max_rounds} is more than this profile's limit of "
            f"{preset.max_rounds}", param="chorus.max_rounds",
        )
    if options.max_total_tokens is not None and preset.max_total_tokens and \
            options.max_total_tokens > preset.max_total_tokens:
        raise RequestError(
            f"chorus.max_total_tokens: {options.max_total_tokens} is more than this profile's "
            f"limit of {preset.max_total_tokens}", param="chorus.max_total_tokens",
        )
    updates = {k: v for k in ("max_rounds", "strict_unanimity", "max_total_tokens", "output_mode")
               if (v := getattr(options, k)) is not None}
    return preset.model_copy(update=updates)


def parse_bounty(raw: Any, profile: ProfileConfig) -> tuple[int, str] | None:
    """`{"amount": <int minor units>, "currency": "USD"}`, or the profile's default."""
    from .stages.bounty import CURRENCIES

    if raw is None:
        default = profile.settlement.default_bounty
        return (default.amount, default.currency) if default else None
    if not isinstance(raw, dict) or set(raw) - {"amount", "currency"} or "amount" not in raw:
        raise RequestError('bounty must be {"amount": <integer minor units>, "currency": "<ISO 4217>"}',
                           param="bounty")
    amount, currency = raw["amount"], raw.get("currency", "USD")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise RequestError("bounty.amount must be an integer number of minor units (cents)", param="bounty.amount")
    if amount < 0:
        raise RequestError("bounty.amount must not be negative", param="bounty.amount")
    limit = profile.settlement.max_bounty
    if amount > limit:
        raise RequestError(f"bounty.amount {amount} is more than this profile's limit of {limit}",
                           param="bounty.amount")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise RequestError(f"bounty.currency {currency!r} is not a supported ISO 4217 code", param="bounty.currency")
    return amount, currency


def build_request(
    profile_name: str,
    profile: ProfileConfig,
    messages: Any,
    params: dict[str, Any],
    caller: Caller,
    *,
    stream: bool,
    request_id: str = "",
    provider: str = PROVIDER,
    fusion_models: frozenset[str] = frozenset(),
) -> FusionRequest:
    options = parse_options(params.get("chorus"))
    profile = requested_profile(profile_name, profile, options, provider=provider, fusion_models=fusion_models)
    messages = validate_messages(messages, profile)
    check_finite(params)
    if options.min_quorum and options.min_quorum > profile.panel.seat_count:
        raise RequestError(
            f"chorus.min_quorum: {options.min_quorum} is more than the profile's "
            f"{profile.panel.seat_count} seats",
            param="chorus.min_quorum",
        )
    cap = profile.limits.max_cost_usd
    if options.max_cost_usd is not None and cap and options.max_cost_usd > cap:
        raise RequestError(f"chorus.max_cost_usd: {options.max_cost_usd} is more than this profile's limit of {cap}",
                           param="chorus.max_cost_usd")
    n = params.get("n")
    if n not in (None, 1):
        raise RequestError("n: fusion returns exactly one choice; n must be 1", param="n")
    for name, why in REFUSED.items():
        if params.get(name) not in (None, False, [], {}):
            raise RequestError(f"{name} is not supported by fusion profiles: {why}", param=name)
    debate = effective_debate(profile, options)
    if wants_json(params) and debate.protocol == "consensus":
        raise RequestError("response_format is not supported with the consensus protocol: the panel votes on "
                           "a free-text candidate", param="response_format")
    tooled = uses_tools(messages, params)
    forward = "tools" if tooled and profile.router.tools == "forward" else None
    if tooled and not forward:
        if params.get("functions") or params.get("function_call"):
            raise RequestError("functions and function_call are the deprecated form of tools; this profile fuses "
                               "tool turns with `tools` and `tool_choice` only", param="functions")
        for name in ("tool_choice", "parallel_tool_calls"):
            if params.get(name) is not None and not params.get("tools"):
                raise RequestError(f"{name} is only allowed when tools are specified", param=name)
    if forward and not profile.router.single_model:
        raise RequestError(
            "this profile has no router.single_model, so it cannot serve tool or function calls",
            param="tools",
        )
    return FusionRequest(
        profile_name=profile_name,
        profile=profile,
        messages=messages,
        params=params,
        options=options,
        caller=caller,
        stream=stream,
        request_id=request_id,
        forward_reason=forward,
        sampling={k: params[k] for k in SAMPLING if params.get(k) is not None},
        final_params={k: params[k] for k in (*FINAL_ONLY, *(FUSED_TOOLS if tooled else ()))
                      if params.get(k) is not None},
        debate=debate,
        bounty=parse_bounty(params.get("bounty"), profile),
        callback_url=parse_callback_url(params.get("callback_url"), profile, profile_name),
    )


def check_finite(params: dict[str, Any]) -> None:
    """A 400 naming a top-level number that is not finite (temperature, top_p, max_tokens,
    ...: JSON's 1e309 is inf); the plugin's own fields are checked by their parsers."""
    for name, value in params.items():
        if name not in PLUGIN_PARAMS and isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"{name}: must be a finite number, not {value}", param=name)


def parse_callback_url(raw: Any, profile: ProfileConfig, profile_name: str) -> str | None:
    """The request's webhook target (its address is checked by the provider, which resolves it)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_URL:
        raise RequestError(f"callback_url must be an http(s) URL of at most {MAX_URL} characters", param="callback_url")
    if not profile.webhooks.enabled:
        raise RequestError(f"webhooks are turned off for profile {profile_name!r} (webhooks.enabled: false)",
                           param="callback_url")
    return raw.strip()


MAX_URL = 2048
# Request fields the plugin reads itself: never passed on to a model.
PLUGIN_PARAMS = ("chorus", "bounty", "callback_url")


def wants_json(params: dict[str, Any]) -> bool:
    """Whether the client asked for JSON (`response_format` other than plain text)."""
    fmt = params.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type", "text") != "text"


def prompt_text(messages: list[Message]) -> str:
    """All text of a validated conversation (for difficulty scoring)."""
    return "\n".join(_text_of(m, i) for i, m in enumerate(messages))
