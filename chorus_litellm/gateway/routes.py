"""Proxy routes: a caller's receipts, and the public keys that verify them.

    GET /chorus/v1/receipts/{debate_id}   the signed receipt; only for the team (or, with
                                          no team, the key) that made the request: anyone
                                          else gets 404, as if it did not exist
    GET /chorus/v1/runs/{debate_id}       the run's transcript (stages, seats, rounds, judge
                                          analysis, usage, timings, decision), same scoping
    GET /chorus/v1/runs/{debate_id}/events  the run's event log as Server-Sent Events:
                                          replays, then follows live until run_done /
                                          run_failed (`Last-Event-ID` or `?after=` resumes;
                                          `?wait_s=` waits for a run not started yet). Only
                                          a run of the caller's is streamed: any other id is
                                          a 404 at once (after `wait_s`, when asked), in every
                                          form; a key holds at most CHORUS_EVENT_STREAMS_PER_KEY
                                          streams open across every worker and replica
                                          sharing the store (then 429; stream_cap.py)
    GET /chorus/v1/runs?limit=N           the team's recent runs, live ones first
    GET /chorus/v1/models                 the model names this plugin serves (its profiles'
                                          entries, `<provider>/<profile>`), with the profile,
                                          its protocol, source (`config` or `store`) and
                                          version: the live view's model picker
    GET /chorus/v1/keys                   current and previous Ed25519 public keys
    GET /chorus/v1/reputation             every payee's running score and rates
    GET /chorus/ui/                       the live view (static files, no auth: its
                                          requests carry the caller's key)

Mounted on the LiteLLM proxy's FastAPI app and guarded by LiteLLM's own
`user_api_key_auth`. (No `from __future__ import annotations` here: FastAPI must see the
real annotation types.)
"""

import base64
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

from ..core.config import profile_name
from ..core.errors import StoreUnavailable
from ..settings import load_settings
from ..core.stages import reputation
from ..core.types import Caller
from ..settlement.signing import ALG, key_id, public_key_from
from ..storage.store import owner_of
from .profiles import TAG, version_of
from .stream_cap import StreamCap

AUTH = Depends(user_api_key_auth)  # LiteLLM's own key check, as on every proxy route
RUN_ID = PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")  # as chorus.debate_id
UI = Path(__file__).resolve().parent.parent / "ui" / "static"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_WAIT_S = 60.0  # the longest a viewer may wait for a run that has not started yet


def is_admin(auth: UserAPIKeyAuth) -> bool:
    """LiteLLM's proxy admin (the master key, or a key of a `proxy_admin` user)."""
    return auth.user_role == LitellmUserRoles.PROXY_ADMIN


async def from_store(call: Any, *args: Any) -> Any:
    """`await call(*args)`, a store outage as a 503 naming it."""
    try:
        return await call(*args)
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc


def public_keys(handler: Any) -> list[dict]:
    """The signer's key, then `CHORUS_PREVIOUS_PUBLIC_KEYS` (comma-separated base64 or files)."""
    keys = [handler.signer.public_key] if handler.signer else []
    for item in filter(None, (os.environ.get("CHORUS_PREVIOUS_PUBLIC_KEYS") or "").split(",")):
        keys.append(public_key_from(item.strip()))
    return [{"alg": ALG, "key_id": key_id(k), "public_key": base64.b64encode(k).decode(),
             "current": i == 0 and handler.signer is not None} for i, k in enumerate(keys)]


def served_models(handler: Any) -> list[dict]:
    """The Router's entries this plugin serves (`litellm_params.model: <provider>/<profile>`),
    one per model name, sorted: `id` (the name clients ask for, whatever its prefix),
    `profile` and `protocol` (None for a profile the handler did not load), `source`
    (`config`, or `store`: created at run time) and `version` (0 for the config's)."""
    router = handler.get_router()
    entries = (router.get_model_list() or []) if router is not None else []
    served: dict[str, dict] = {}
    for entry in entries:
        name = profile_name(entry, handler.provider) if isinstance(entry, dict) else None
        if name and entry.get("model_name") and entry["model_name"] not in served:
            loaded = handler.profiles.get(name)
            info = entry.get("model_info")
            served[entry["model_name"]] = {"id": entry["model_name"], "profile": name,
                                           "protocol": loaded.debate.protocol if loaded else None,
                                           "source": "store" if (info or {}).get(TAG) else "config",
                                           "version": version_of(info)}
    return [served[k] for k in sorted(served)]


def build_router(handler: Any) -> APIRouter:
    router = APIRouter(prefix="/chorus/v1", tags=["chorus"])
    streams = StreamCap(lambda: handler.store, load_settings(create_dirs=False).event_streams_per_key)

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

    async def stream_slot(key: str) -> Any:
        """Take one of the key's stream slots (429 when none is left); returns the release,
        which gives it back once however often it is called."""
        release = await streams.take(key)
        if release is None:
            raise HTTPException(status_code=429, headers={"Retry-After": "5"}, detail=(
                f"too many open event streams for this key: at most {streams.limit} at once across the "
                f"proxy's workers and replicas (CHORUS_EVENT_STREAMS_PER_KEY); close one and retry"))
        return release

    @router.get("/runs/{debate_id}/events")
    async def run_events(request: Request, debate_id: str = RUN_ID, after: int = Query(0, ge=0),
                         wait_s: float = Query(0.0, ge=0, le=MAX_WAIT_S),
                         last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                         auth: UserAPIKeyAuth = AUTH) -> StreamingResponse:
        if last_event_id is not None:
            if not last_event_id.isdigit():
                raise HTTPException(status_code=400, detail="Last-Event-ID must be an event's sequence number")
            after = max(after, int(last_event_id))
        # One decision for every form (after=0, after=N, Last-Event-ID): a run of the
        # caller's is streamed; any other id is the same 404, at once, or once `wait_s` has
        # passed without the caller's run starting. Another team's run looks exactly like a
        # missing one, and nothing is held open for either.
        not_found = HTTPException(status_code=404, detail=f"no run {debate_id!r} for this team (or it expired)")
        who = owner(auth)
        if who is None:
            raise not_found
        release = await stream_slot(auth.api_key or who)
        try:
            events = handler.event_log()
            first = await events.open(who, debate_id, after, wait_s, gone=request.is_disconnected)
        except StoreUnavailable as exc:
            release()
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc
        except BaseException:
            release()
            raise
        if first is None:
            release()
            raise not_found
        return _Stream(_sse(events.follow(who, debate_id, first, after)), release, media_type="text/event-stream",
                       headers=SSE_HEADERS)

    @router.get("/reputation")
    async def get_reputation(auth: UserAPIKeyAuth = AUTH) -> dict:
        try:
            counters = await handler.store.reputation()
        except StoreUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"the store is unavailable: {exc}") from exc
        return {"payees": {p: reputation.summary(c) for p, c in sorted(counters.items())}}

    @router.get("/models")
    async def list_models(auth: UserAPIKeyAuth = AUTH) -> dict:
        return {"models": served_models(handler)}

    @router.get("/keys")
    async def get_keys(auth: UserAPIKeyAuth = AUTH) -> dict:
        return {"keys": public_keys(handler)}

    return router


class _Stream(StreamingResponse):
    """A streaming response that gives its stream slot back however it ends (done, the
    client gone, cancelled) and stops following the run."""

    def __init__(self, content: Any, release: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]  # our body is a generator


async def _sse(events: Any):
    """Server-Sent Events frames: `id` the sequence number, `event` the type, `data` the envelope."""
    try:
        async with contextlib.aclosing(events):  # a stream closed early stops following the run
            async for event in events:
                if event is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
    except StoreUnavailable as exc:  # mid-stream: say why; the client resumes with Last-Event-ID
        yield f"event: error\ndata: {json.dumps({'error': f'the store is unavailable: {exc}'})}\n\n"

