"""Translation between LiteLLM and the fusion core: who is calling, the client's params,
errors out, the run's charge, and the OpenAI shapes of an answer (a `ModelResponse`, or
`ModelResponseStream` chunks) built from a run's report or a replayed run's record.
Pure functions and one small hook; the provider (provider.py) calls them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import litellm
import openai
from litellm.types.utils import Delta as LDelta
from litellm.types.utils import Message as LMessage
from litellm.types.utils import ModelResponse, ModelResponseStream, StreamingChoices
from litellm.types.utils import Usage as LUsage

from ..core.errors import BudgetError, ChorusError, RunError
from ..core.events import Replayed, RunDone
from ..core.report import RunReport
from ..core.request import FusionRequest
from ..core.types import Budget, Caller
from . import compat

log = logging.getLogger("chorus_litellm")

# Keys LiteLLM adds to optional_params that are not the client's request params.
_INTERNAL = {"stream", "stream_options", "extra_body", "metadata"}
# LiteLLM's exception class per HTTP status our errors carry (409/504 have none: the
# nearest class, with the status and name set).
_CLASSES: dict[int, Any] = {400: litellm.BadRequestError, 403: litellm.BadRequestError, 409: litellm.BadRequestError,
                            502: litellm.BadGatewayError, 503: litellm.ServiceUnavailableError,
                            504: litellm.BadGatewayError}
_NAMES = {403: "PermissionDeniedError", 409: "ConflictError", 504: "GatewayTimeoutError"}

def caller_of(litellm_params: dict) -> Caller:
    meta = litellm_params.get("metadata") or {}
    get = lambda key: (str(meta[key]) if meta.get(key) is not None else None)  # noqa: E731
    who = Caller(
        key_hash=get("user_api_key_hash"),
        key_alias=get("user_api_key_alias"),
        team_id=get("user_api_key_team_id"),
        user_id=get("user_api_key_user_id"),
        org_id=get("user_api_key_org_id"),
    )
    return dataclasses.replace(who, budgets=_budgets(meta, who))


# (scope, spend field, max budget field) on LiteLLM's `UserAPIKeyAuth`; the proxy copies
# the same values into the request metadata as `user_api_key_<field>`.
_BUDGETS: tuple[tuple[Literal["key", "team", "user"], str, str], ...] = (
    ("key", "spend", "max_budget"), ("team", "team_spend", "team_max_budget"),
    ("user", "user_spend", "user_max_budget"))


def _budgets(meta: dict, caller: Caller) -> tuple[Budget, ...]:
    """The caller's key, team and user budgets, as LiteLLM's auth saw them: the auth
    object (`metadata.user_api_key_auth`, custom auth included), else the metadata keys.
    As LiteLLM does by default, a team key is held to its team's budget, not its user's
    (`apply_user_budget_to_team_keys` is LiteLLM's own check). End-user and organization
    budgets carry no spend here, so LiteLLM alone checks them."""
    auth = meta.get("user_api_key_auth")
    ids = {"key": caller.key_alias or caller.key_hash, "team": caller.team_id, "user": caller.user_id}
    found = []
    for scope, spend_field, max_field in _BUDGETS:
        if scope == "user" and caller.team_id:
            continue
        read = (lambda f: getattr(auth, f, None)) if auth is not None else (lambda f: meta.get(f"user_api_key_{f}"))
        limit = read(max_field)
        if isinstance(limit, int | float) and not isinstance(limit, bool) and math.isfinite(limit):
            found.append(Budget(scope, ids[scope], float(read(spend_field) or 0.0), float(limit)))
    return tuple(found)


def client_params(optional_params: dict) -> dict:
    params = {k: v for k, v in optional_params.items() if k not in _INTERNAL}
    params.update(optional_params.get("extra_body") or {})
    return params


def to_litellm_error(exc: BaseException, name: str) -> Exception:
    """Any exception -> a LiteLLM exception the proxy serves as an OpenAI-style error.

    Our `RunError`s keep their status (400, 409, 502, 503, 504); anything else (a config
    mistake, a signing or store bug, an embedder that cannot load) is a 500 that names
    its type, with the details in the log. Each carries `num_retries = 0`. `name` is the
    fusion model's own name, `<provider>/<profile>`.
    """
    provider = name.split("/")[0]
    if isinstance(exc, openai.APIStatusError) and getattr(exc, "num_retries", None) == 0:
        return exc  # already mapped (a re-raise through this boundary)
    if isinstance(exc, BudgetError):  # LiteLLM's own budget error, as its auth serves it
        refused: Any = litellm.BadRequestError(message=str(exc), model=name, llm_provider=provider)
        status = compat.budget_status()
        refused.status_code, refused.type, refused.code = status, "budget_exceeded", str(status)
        refused.message = str(exc)  # LiteLLM's wording, without its class-name prefix
        refused.num_retries = refused.max_retries = 0
        return refused
    status = exc.status_code if isinstance(exc, RunError) else 500
    if status == 500:
        log.error("chorus: %s failed on an unexpected %s", name, type(exc).__name__, exc_info=exc)
        kind = "configuration error" if isinstance(exc, ChorusError) else "internal error"
        error: Any = litellm.InternalServerError(
            message=f"{name}: {kind} ({type(exc).__name__}: {exc})", model=name, llm_provider=provider)
    else:
        error = _CLASSES[status](message=str(exc), model=name, llm_provider=provider)
        error.status_code = status
        if status in _NAMES:
            error.message = f"litellm.{_NAMES[status]}: {exc}"
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:  # the proxy serves an exception's `headers`
            error.headers = {"retry-after": str(retry_after)}
    error.num_retries = 0
    error.max_retries = 0
    return error


class Charge:
    """The ledger's charge hook: keep LiteLLM's logging object at the running total."""

    def __init__(self, logging_obj: Any, stream: bool) -> None:
        self.logging_obj, self.stream = logging_obj, stream

    def __call__(self, report: RunReport) -> None:
        if self.logging_obj is None:
            return
        charged, cost = openai_usage(report), report.cost
        compat.charge_partial(self.logging_obj, charged, cost)  # what a failed run bills
        if self.stream:
            self.logging_obj.model_call_details["additional_response_cost"] = cost



def final_response(response: ModelResponse, text: str, report: Any, req: FusionRequest) -> ModelResponse:
    if not isinstance(report, RunReport):  # a replay of the first run
        calls = list(tool_calls(report))
        response.choices[0].message = LMessage(
            role="assistant", content=text or (None if calls else ""), tool_calls=calls or None)
        response.choices[0].finish_reason = "tool_calls" if calls else "stop"
        response.model = req.model
        response.usage = replayed_usage()  # type: ignore[attr-defined]
        response._hidden_params["response_cost"] = 0.0
        response.chorus = extension(report, req)  # type: ignore[attr-defined]
        return response
    if _ours(report):
        calls = list(tool_calls(report))
        response.choices[0].message = LMessage(
            role="assistant", content=text or (None if calls else ""), tool_calls=calls or None)
        response.choices[0].finish_reason = report.finish_reason()
        response.model = req.model
    response.usage = openai_usage(report)  # type: ignore[attr-defined]
    response._hidden_params["response_cost"] = report.cost
    response.chorus = extension(report, req)  # type: ignore[attr-defined]
    return response


def report_of(event: RunDone | Replayed) -> Any:
    """The run's report, or a replayed run's stored record."""
    return event.report if isinstance(event, RunDone) else event.record


def tool_calls(report: Any) -> tuple[dict, ...]:
    """The synthesizer's tool calls (router.tools: fuse): of this run, or of a replayed one."""
    if isinstance(report, RunReport):
        return report.synthesis.tool_calls if report.synthesis else ()
    return tuple((report["extension"].get("synthesis") or {}).get("tool_calls") or ())


def finish_reason(report: Any) -> str:
    """A streamed fused answer's last finish_reason (`length` when it was cut off); a
    replayed run's, and a forwarded one whose model sent none, `stop`."""
    return report.finish_reason() if isinstance(report, RunReport) and _ours(report) else "stop"


def _ours(report: RunReport) -> bool:
    """The answer is the run's own (a synthesis, a protocol's answer, the consult gate's
    single answer), not a forwarded model's response relayed as it came (the gate's
    forward leg, or the single model after a lost quorum)."""
    return report.route is not None and not report.relayed


def has_payload(chunk: Any) -> bool:
    return any(
        getattr(c.delta, "content", None) or getattr(c.delta, "tool_calls", None)
        or getattr(c.delta, "function_call", None)
        for c in getattr(chunk, "choices", None) or ()
    )


def extension(report: Any, req: FusionRequest) -> dict:
    if not isinstance(report, RunReport):
        return report["extension"]
    ext = report.extension(include_panel=req.options.include_panel, audit=req.debate.output_mode == "audit")
    return {**ext, "profile_version": req.profile_version}  # which version of the profile answered


def openai_usage(report: RunReport) -> LUsage:
    u = report.usage
    return LUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                  total_tokens=u.total_tokens)


def replayed_usage() -> LUsage:
    return LUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0)


def stream_chunk(chunk_id: str, model: str, *, content: str | None = None, reasoning: str | None = None,
           finish_reason: str | None = None, tool_calls: Sequence[dict] = (), role: str | None = None
           ) -> ModelResponseStream:
    calls = [{**call, "index": i} for i, call in enumerate(tool_calls)] or None
    delta = LDelta(content=content, reasoning_content=reasoning, role=role, tool_calls=calls)
    return ModelResponseStream(
        id=chunk_id, model=model,
        choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish_reason)],
    )
