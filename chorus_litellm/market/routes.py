"""Marketplace routes: peers join a pool, beat, leave; the operator lists a pool.

    POST   /chorus/v1/peers                     register (signed by the peer's key; 201)
    POST   /chorus/v1/peers/{peer_id}/heartbeat  still here (signed; 200)
    DELETE /chorus/v1/peers/{peer_id}            leave (signed; 204)
    GET    /chorus/v1/peers/{peer_id}/earnings  the receipts that paid this peer, totals per
                                                 currency, the proxy's public keys (signed
                                                 by the peer itself; read-only, so no replay
                                                 rule beyond the time window)
    GET    /chorus/v1/peers[?pool=NAME]          a pool (else every pool): state, model,
                                                 personas, payee, load (calls in flight, all
                                                 workers) and its limit, price, reputation,
                                                 earnings (a LiteLLM key; base URLs only for
                                                 proxy admins)

Peer requests carry no LiteLLM key: the peer's Ed25519 signature is its identity
(market/peers.py: signed bytes, replay rules, admission). A registration is stored only if its
`t` is later than the peer's last accepted one, a compare-and-set in the store that also
sees a peer that left: its leave request's `t` is kept for the signature window, so a
registration captured before it left is a replay, not a way back in. Refusals are JSON
errors: 401 for identity, 403 for admission, 400 for the body (a base URL that fails the
SSRF rule of observe/netguard.py names the reason), 404 for an unknown peer, 503 when
the store is down. (No `from __future__ import annotations`: FastAPI must see the real types.)
"""

import base64
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.staticfiles import StaticFiles
from litellm.proxy._types import UserAPIKeyAuth
from pydantic import ValidationError

from . import peers
from ..core.errors import RequestError
from ..settings import load_settings
from ..core.stages import reputation
from ..core.stages.prompts import PERSONAS
from ..observe.netguard import Allowlist, UnsafeURL, check_url
from ..gateway.profile_routes import build_profile_router
from ..gateway.routes import AUTH, UI, build_router, from_store as stored, is_admin, public_keys

REPLAY = "signature timestamp is not later than this peer's last request (a replay?)"


def build_peer_router(handler: Any) -> APIRouter:
    router = APIRouter(prefix="/chorus/v1/peers", tags=["chorus peers"])
    settings = load_settings(create_dirs=False)
    policy, urls = settings.peer_policy(), Allowlist.parse(settings.peer_url_allowlist)
    clock = handler.store.clock

    async def signed(request: Request) -> tuple[peers.Signed, bytes]:
        body = await request.body()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return peers.verify(dict(request.headers), request.method, target, body, now=clock(),
                            window_s=policy.window_s), body

    async def existing(peer_id: str) -> dict:
        found = await stored(handler.store.get_peer, peer_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no peer {peer_id} on this proxy")
        return found

    @router.post("", status_code=201)
    async def register(request: Request) -> dict:
        try:
            sender, body = await signed(request)
            before = await stored(handler.store.get_peer, sender.peer_id)
            if before is not None and sender.timestamp <= before["last_ts"]:
                raise peers.PeerError(REPLAY)
            try:
                offer = peers.Registration.model_validate_json(body)
            except ValidationError as exc:
                raise RequestError(f"bad registration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}",
                                   param="body") from None
            peers.admit(policy, sender.peer_id, offer.pool, request.headers.get(peers.INVITE))
            unknown = [p for p in offer.personas if p not in known_personas(handler)]
            if unknown:
                raise RequestError(f"unknown personas {unknown}; this proxy knows {sorted(known_personas(handler))}",
                                   param="personas")
            try:
                await check_url(offer.base_url, urls, what="base_url")
            except UnsafeURL as exc:
                raise RequestError(f"base_url refused: {exc}", param="base_url") from None
        except RequestError as exc:
            raise HTTPException(status_code=exc.status_code, detail=str(exc)) from exc
        now = clock()
        record = {**offer.model_dump(mode="json"), "peer_id": sender.peer_id,
                  "public_key": base64.b64encode(sender.public_key).decode(),
                  "registered_at": before["record"]["registered_at"] if before else now}
        if not await stored(handler.store.put_peer, sender.peer_id, offer.pool, record, now, sender.timestamp):
            raise HTTPException(status_code=401, detail=REPLAY)  # a later one was accepted, or the peer left since
        return {"peer_id": sender.peer_id, "pool": offer.pool, "state": "live", "heartbeat_s": peers.HEARTBEAT_S,
                "away_after_s": policy.away_after_s}

    @router.post("/{peer_id}/heartbeat")
    async def heartbeat(peer_id: str, request: Request) -> dict:
        peer = await existing(peer_id)
        sender = await own(request, peer_id, peer)
        if not await stored(handler.store.touch_peer, peer_id, clock(), sender.timestamp):
            raise HTTPException(status_code=401, detail=REPLAY)  # another worker took a later one meanwhile
        return {"peer_id": peer_id, "pool": peer["pool"], "state": "live"}

    @router.delete("/{peer_id}", status_code=204)
    async def leave(peer_id: str, request: Request) -> Response:
        peer = await existing(peer_id)
        sender = await own(request, peer_id, peer)
        await stored(handler.store.delete_peer, peer_id, sender.timestamp, policy.window_s)
        return Response(status_code=204)

    async def own(request: Request, peer_id: str, peer: dict) -> peers.Signed:
        """The request is signed by this peer's own key, later than its last one."""
        try:
            sender, _body = await signed(request)
            if sender.peer_id != peer_id:
                raise peers.PeerError(f"signed by {sender.peer_id}, not by {peer_id}", 403)
            if sender.timestamp <= peer["last_ts"]:
                raise peers.PeerError(REPLAY)
        except peers.PeerError as exc:
            raise HTTPException(status_code=exc.status_code, detail=str(exc)) from exc
        return sender

    @router.get("/{peer_id}/earnings")
    async def earnings(peer_id: str, request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict:
        try:
            sender, _body = await signed(request)
            if sender.peer_id != peer_id:
                raise peers.PeerError(f"signed by {sender.peer_id}, not by {peer_id}", 403)
        except peers.PeerError as exc:
            raise HTTPException(status_code=exc.status_code, detail=str(exc)) from exc
        return {**await stored(handler.store.peer_earnings, peer_id, limit), "keys": public_keys(handler)}

    @router.get("")
    async def list_pool(pool: str | None = Query(None, pattern=peers.POOL.pattern),
                        auth: UserAPIKeyAuth = AUTH) -> dict:
        found = await stored(handler.store.pool_peers, pool) if pool else await stored(handler.store.all_peers)
        loads = await stored(handler.store.peer_loads)
        totals = await stored(handler.store.earnings_totals, [p["record"]["peer_id"] for p in found])
        scores = await stored(handler.store.reputation, sorted(p["record"]["peer_id"] for p in found))
        admin = is_admin(auth)
        now = clock()
        listed = []
        for p in found:
            r = p["record"]
            entry = {k: r[k] for k in ("peer_id", "pool", "model", "payee", "personas", "max_concurrency",
                                       "price_per_token", "registered_at")}
            entry.update(state=peers.state(p["last_seen"], now, policy.away_after_s), last_seen=p["last_seen"],
                         reputation=reputation.summary(scores.get(r["peer_id"], {})), earnings=totals[r["peer_id"]],
                         load=loads.calls.get(r["peer_id"], 0), drawn_by=loads.deployed.get(r["peer_id"], 0))
            if admin:
                entry["base_url"] = r["base_url"]
            listed.append(entry)
        return {"pool": pool, "live": sum(e["state"] == "live" for e in listed), "peers": listed,
                "workers": loads.workers, "away_after_s": policy.away_after_s}

    return router


def known_personas(handler: Any) -> set[str]:
    return set(PERSONAS) | {name for profile in handler.profiles.values() for name in profile.personas}


def mount(app: Any, handler: Any) -> None:
    """Every chorus route on the proxy's app: runs, receipts and keys (routes.py), the
    marketplace (here), profiles at run time (profile_routes.py) and the live view's page."""
    app.include_router(build_router(handler))
    app.include_router(build_peer_router(handler))
    app.include_router(build_profile_router(handler))
    if UI.is_dir():
        app.mount("/chorus/ui", StaticFiles(directory=UI, html=True), name="chorus-ui")
