"""Loaded by the real LiteLLM proxy in end-to-end tests (PYTHONPATH=tests).

`user_api_key_auth` emulates virtual keys, teams and roles (real keys need Postgres +
Prisma, which cannot be installed here; `sk-admin` is a proxy admin's); `spend_log`
records what LiteLLM charged for every logged call, as JSON lines in $CHORUS_SPEND_LOG.
With $CHORUS_TEST_SPANS (a folder), the process gets an OpenTelemetry SDK provider whose in-memory exporter also writes
each finished span as a JSON line to `<folder>/<pid>.jsonl`; LiteLLM's `otel` callback
(listed after `proxy_support.spend_log`) finds it and uses it.
"""

import hashlib
import json
import os

from fastapi import HTTPException, Request
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

if os.environ.get("CHORUS_TEST_SPANS"):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class SpanFile(InMemorySpanExporter):
        def export(self, spans):
            with open(os.path.join(os.environ["CHORUS_TEST_SPANS"], f"{os.getpid()}.jsonl"), "a") as fh:
                fh.writelines(span.to_json(indent=None) + "\n" for span in spans)
            return super().export(spans)

    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(SpanFile()))
    trace.set_tracer_provider(_provider)

KEYS = {"sk-team-a": ("team-a", "alice"), "sk-team-b": ("team-b", "bob"), "sk-team-c-low": ("team-c", "carol"),
        "sk-team-c-ok": ("team-c", "carol"), "sk-team-a-narrow": ("team-a", "alice"), "sk-admin": ("ops", "admin")}
# LiteLLM's role of a key's user (absent: an ordinary user's key): the admin API (/chorus/v1/profiles)
ROLES = {"sk-admin": LitellmUserRoles.PROXY_ADMIN}
# The models a key may call (LiteLLM's `models` on a virtual key); absent: every model.
MODELS = {"sk-team-a-narrow": ["fusion/research", "model-a", "model-b"]}
# Budgets LiteLLM would load with a virtual key (USD): spend so far and the maximum.
BUDGETS = {"sk-team-c-low": {"spend": 2.9999, "max_budget": 3.0, "team_spend": 1.0, "team_max_budget": 50.0},
           "sk-team-c-ok": {"spend": 0.0, "max_budget": 3.0, "team_spend": 1.0, "team_max_budget": 50.0}}


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = api_key.removeprefix("Bearer ").strip()
    if key not in KEYS:
        raise HTTPException(status_code=401, detail="unknown key")
    team, user = KEYS[key]
    role = {"user_role": ROLES[key]} if key in ROLES else {}
    return UserAPIKeyAuth(api_key=hashlib.sha256(key.encode()).hexdigest(), team_id=team, user_id=user,
                          models=MODELS.get(key, []), **BUDGETS.get(key, {}), **role)


def _write(record: dict) -> None:
    # One O_APPEND write per line, so two workers' lines never interleave.
    fd = os.open(os.environ["CHORUS_SPEND_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def _debate_id(params: dict) -> str | None:
    """The request's `chorus.debate_id` (top level or in `extra_body`, as the plugin reads it)."""
    extra = params.get("extra_body")
    chorus = extra.get("chorus") if isinstance(extra, dict) and "chorus" in extra else params.get("chorus")
    return chorus.get("debate_id") if isinstance(chorus, dict) else None


class SpendLog(CustomLogger):
    """What LiteLLM's own spend tracking (`_ProxyDBLogger`) would charge, per logged call:
    success events (including the one LiteLLM dispatches when a client disconnects
    mid-stream; with the request's `chorus.debate_id`, so a test can count the charges
    per run across replicas) and failures (the partial usage and cost lifted onto the
    request)."""

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        import litellm

        billed = isinstance(request_data.get("combined_usage_object"), litellm.Usage)
        _write({"failure": True, "status": getattr(original_exception, "status_code", None),
                "model_group": request_data.get("model"),
                "response_cost": float(request_data.get("response_cost") or 0.0) if billed else 0.0,
                "team_id": user_api_key_dict.team_id, "key_hash": user_api_key_dict.api_key,
                "call_id": request_data.get("litellm_call_id")})

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        slo = kwargs.get("standard_logging_object") or {}
        meta = slo.get("metadata") or {}
        record = {
            "model_group": slo.get("model_group"),
            "model": slo.get("model"),
            "response_cost": slo.get("response_cost"),
            "stream": bool(kwargs.get("stream")),
            "team_id": meta.get("user_api_key_team_id"),
            "key_hash": meta.get("user_api_key_hash"),
            "call_id": kwargs.get("litellm_call_id"),
            "tags": meta.get("tags") or (slo.get("request_tags") or []),
            "debate_id": _debate_id(kwargs.get("optional_params") or {}),
        }
        _write(record)


spend_log = SpendLog()
