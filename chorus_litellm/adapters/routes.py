"""Proxy routes: a caller's receipts, and the public keys that verify them.

    GET /chorus/v1/receipts/{debate_id}   the signed receipt; only for the team (or, with
                                          no team, the key) that made the request: anyone
                                          else gets 404, as if it did not exist
    GET /chorus/v1/runs/{debate_id}       the run's transcript (stages, seats, rounds, judge
                                          analysis, usage, timings, decision), same scoping
    GET /chorus/v1/runs/{debate_id}/events  the run's event log as Server-Sent Events:
                                          replays, then follows live until run_done /
                                          run_failed (`Last-Event-ID` or `?after=` resumes;
                                          `?wait_s=` waits for a run not started yet)
    GET /chorus/v1/runs?limit=N           the team's recent runs, live ones first
    GET /chorus/v1/keys                   current and previous Ed25519 public keys
    GET /chorus/v1/reputation             every payee's running score and rates
    GET /chorus/ui/                       the live view (static files, no auth: its
                                          requests carry the caller's key)

Mounted on the LiteLLM proxy's FastAPI app and guarded by LiteLLM's own
`user_api_key_auth`. (No `from __future__ import annotations` here: FastAPI must see the
real annotation types.)
"""

import base64
import json
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path as PathParam, Query
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

from ..errors import StoreUnavailable
from ..stages import reputation
from ..types import Caller
from .signing import ALG, key_id, public_key_from
from .store import owner_of


AUTH = Depends(user_api_key_auth)  # LiteLLM's own key check, as on every proxy route
RUN_ID = PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")  # as chorus.debate_id
UI = Path(__file__).resolve().parent.parent / "ui" / "static"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def public_keys(handler: Any) -> list[dict]:
    """The signer's key, then `CHORUS_PREVIOUS_PUBLIC_KEYS` (comma-separated base64 or files)."""
    keys = [handler.signer.public_key] if handler.signer else []
    for item in filter(None, (os.environ.get("CHORUS_PREVIOUS_PUBLIC_KEYS") or "").split(",")):
        keys.append(public_key_from(item.strip()))
    return [{"alg": ALG, "key_id": key_id(k), "public_key": base64.b64encode(k).decode(),
             "current": i == 0 and handler.signer is not None} for i, k in enumerate(keys)]


def build_router(handler: Any) -> APIRouter:
    router = APIRouter(prefix="/chorus/v1", tags=["chorus"])

    def owner(auth: UserAPIKeyAuth) -> str | None:
        return owner_of(Caller(key_hash=auth.api_key, team_id=auth.team_id))

    async def owned(get: Any, debate_id: str, auth: UserAPIKeyAuth, what: str) -> dict:
        who = owner(auth)
        try:
            record = await get(who, debate_id) if who is not None else None
        except StoreUnavailable as exc:  # neither the store nor the outbox could be read
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc
        if record is None:  # another team's record looks exactly like a missing one
            raise HTTPException(status_code=404, detail=f"no {what} {debate_id!r} for this team")
        return record

    @router.get("/receipts/{debate_id}")
    async def get_receipt(debate_id: str, auth: UserAPIKeyAuth = AUTH) -> dict:
        return await owned(handler.store.get_receipt, debate_id, auth, "receipt")

    @router.get("/runs")
    async def list_runs(limit: int = Query(20, ge=1, le=200), auth: UserAPIKeyAuth = AUTH) -> dict:
        try:
            return {"runs": await handler.store.list_runs(owner(auth), limit)}
        except StoreUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc

    @router.get("/runs/{debate_id}")
    async def get_run(debate_id: str = RUN_ID, auth: UserAPIKeyAuth = AUTH) -> dict:
        return await owned(handler.store.get_transcript, debate_id, auth, "run (or it expired)")

    @router.get("/runs/{debate_id}/events")
    async def run_events(debate_id: str = RUN_ID, after: int = Query(0, ge=0),
                         wait_s: float = Query(2.0, ge=0, le=60),
                         last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                         auth: UserAPIKeyAuth = AUTH) -> StreamingResponse:
        if last_event_id is not None:
            if not last_event_id.isdigit():
                raise HTTPException(status_code=400, detail="Last-Event-ID must be an event's sequence number")
            after = max(after, int(last_event_id))
        who, events = owner(auth), handler.event_log()
        try:
            first = await events.first(who, debate_id, after, wait_s) if who is not None else []
        except StoreUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc
        if not first and after == 0:  # another team's run looks exactly like a missing one
            raise HTTPException(status_code=404, detail=f"no run {debate_id!r} for this team (or it expired)")
        return StreamingResponse(_sse(events.follow(who, debate_id, first)), media_type="text/event-stream",
                                 headers=SSE_HEADERS)

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


async def _sse(events: Any):
    """Server-Sent Events frames: `id` the sequence number, `event` the type, `data` the envelope."""
    try:
        async for event in events:
            if event is None:
                yield ": keep-alive\n\n"
            else:
                yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
    except StoreUnavailable as exc:  # mid-stream: say why; the client resumes with Last-Event-ID
        yield f"event: error\ndata: {json.dumps({'error': f'the store is unavailable: {exc}'})}\n\n"


def mount(app: Any, handler: Any) -> None:
    from .peer_routes import build_peer_router

    app.include_router(build_router(handler))
    app.include_router(build_peer_router(handler))
    if UI.is_dir():
        app.mount("/chorus/ui", StaticFiles(directory=UI, html=True), name="chorus-ui")
