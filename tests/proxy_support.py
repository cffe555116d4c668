"""Loaded by the real LiteLLM proxy in end-to-end tests (PYTHONPATH=tests).

`user_api_key_auth` emulates virtual keys and teams (real keys need Postgres + Prisma,
which cannot be installed here); `spend_log` records what LiteLLM charged for every
logged call, as JSON lines in $CHORUS_SPEND_LOG.
"""

import hashlib
import json
import os

from fastapi import HTTPException, Request
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth

KEYS = {"sk-team-a": ("team-a", "alice"), "sk-team-b": ("team-b", "bob")}


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = api_key.removeprefix("Bearer ").strip()
    if key not in KEYS:
        raise HTTPException(status_code=401, detail="unknown key")
    team, user = KEYS[key]
    return UserAPIKeyAuth(api_key=hashlib.sha256(key.encode()).hexdigest(), team_id=team, user_id=user)


class SpendLog(CustomLogger):
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
        }
        with open(os.environ["CHORUS_SPEND_LOG"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


spend_log = SpendLog()
