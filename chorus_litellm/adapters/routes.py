"""Proxy routes: a caller's receipts, and the public keys that verify them.

    GET /chorus/v1/receipts/{debate_id}   the signed receipt; only for the team (or, with
                                          no team, the key) that made the request: anyone
                                          else gets 404, as if it did not exist
    GET /chorus/v1/runs/{debate_id}       the run's transcript (stages, seats, rounds, judge
                                          analysis, usage, timings, decision), same scoping
    GET /chorus/v1/keys                   current and previous Ed25519 public keys
    GET /chorus/v1/reputation             every payee's running score and rates

Mounted on the LiteLLM proxy's FastAPI app and guarded by LiteLLM's own
`user_api_key_auth`. (No `from __future__ import annotations` here: FastAPI must see the
real annotation types.)
"""

import base64
import os
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

from ..errors import StoreUnavailable
from ..stages import reputation
from ..types import Caller
from .signing import ALG, key_id, public_key_from
from .store import owner_of


AUTH = Depends(user_api_key_auth)  # LiteLLM's own key check, as on every proxy route


def public_keys(handler: Any) -> list[dict]:
    """The signer's key, then `CHORUS_PREVIOUS_PUBLIC_KEYS` (comma-separated base64 or files)."""
    keys = [handler.signer.public_key] if handler.signer else []
    for item in filter(None, (os.environ.get("CHORUS_PREVIOUS_PUBLIC_KEYS") or "").split(",")):
        keys.append(public_key_from(item.strip()))
    return [{"alg": ALG, "key_id": key_id(k), "public_key": base64.b64encode(k).decode(),
             "current": i == 0 and handler.signer is not None} for i, k in enumerate(keys)]


def build_router(handler: Any) -> APIRouter:
    router = APIRouter(prefix="/chorus/v1", tags=["chorus"])

    async def owned(get: Any, debate_id: str, auth: UserAPIKeyAuth, what: str) -> dict:
        owner = owner_of(Caller(key_hash=auth.api_key, team_id=auth.team_id))
        try:
            record = await get(owner, debate_id) if owner is not None else None
        except StoreUnavailable as exc:  # neither the store nor the outbox could be read
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc
        if record is None:  # another team's record looks exactly like a missing one
            raise HTTPException(status_code=404, detail=f"no {what} {debate_id!r} for this team")
        return record

    @router.get("/receipts/{debate_id}")
    async def get_receipt(debate_id: str, auth: UserAPIKeyAuth = AUTH) -> dict:
        return await owned(handler.store.get_receipt, debate_id, auth, "receipt")

    @router.get("/runs/{debate_id}")
    async def get_run(debate_id: str, auth: UserAPIKeyAuth = AUTH) -> dict:
        return await owned(handler.store.get_transcript, debate_id, auth, "run (or it expired)")

    @router.get("/reputation")
    async def get_reputation(auth: UserAPIKeyAuth = AUTH) -> dict:
        try:
            counters = await handler.store.reputation()
        except StoreUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc
        return {"payees": {p: reputation.summary(c) for p, c in sorted(counters.items())}}

    @router.get("/keys")
    async def get_keys(auth: UserAPIKeyAuth = AUTH) -> dict:
        return {"keys": public_keys(handler)}

    return router


def mount(app: Any, handler: Any) -> None:
    app.include_router(build_router(handler))
