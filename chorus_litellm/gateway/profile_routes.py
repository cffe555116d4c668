"""Admin routes: fusion profiles created, changed and deleted while the proxy runs.

    GET    /chorus/v1/profiles               every profile: litellm_config.yaml's (`source:
                                             config`, version 0, read-only) and the stored
                                             ones (`source: store`, their version), each
                                             with the model it is served as, and the live
                                             `workers`; `?include_deleted=true` adds the
                                             tombstones (a delete's rollout)
    GET    /chorus/v1/profiles/{name}        one of them
    POST   /chorus/v1/profiles               {"name", "profile": {model_info.chorus block}}:
                                             a stored profile, served as `fusion/<name>`
                                             (201; version 1, or one past a deleted one's)
    PUT    /chorus/v1/profiles/{name}        {"version": the one read, "profile"}: the
                                             block replaced, as the next version
    DELETE /chorus/v1/profiles/{name}?version=N   taken down; its tombstone keeps the version

LiteLLM's proxy admins only (`user_role` proxy_admin: the master key, an admin user's key):
any other key is a 403 on every verb, reads included. The rules are core/profiles.py's:
a bad body is a 400 naming the field (nothing stored); a name taken (a config-file
profile, a model the proxy serves) or a stale version is a 409; a config-file profile
is read-only here (409: change the file); an unknown or deleted one is a 404; a store
outage a 503. The worker that took a change serves it before answering; every other
worker and replica within CHORUS_PROFILE_SYNC_S (gateway/profiles.py). Every view
carries its `rollout` (core/profiles.rollout): `{"workers", "serving", "versions",
"complete"}` as the workers last published it (null while the store cannot say), so
an admin polls GET until `complete` to know a change is live everywhere.
(No `from __future__ import annotations`: FastAPI must see the real types.)
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.routing import APIRoute
from litellm.proxy._types import UserAPIKeyAuth

from ..core.config import profile_name
from ..core.errors import ProfileError, StoreUnavailable
from ..core.ports import ProfilesServed
from ..core.profiles import (CONFIG_VERSION, NewProfile, ProfileChange, check_name, model_name, read_body, rollout,
                             validate)
from .profiles import TAG
from .routes import AUTH, from_store, is_admin, served_models


class _Route(APIRoute):
    """A ProfileError raised by a route is the HTTP error it names."""

    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()

        async def mapped(request: Request) -> Any:
            try:
                return await handle(request)
            except ProfileError as exc:
                raise HTTPException(status_code=exc.status_code, detail=str(exc)) from exc
        return mapped


def build_profile_router(handler: Any) -> APIRouter:
    router = APIRouter(prefix="/chorus/v1/profiles", tags=["chorus profiles"], route_class=_Route)
    store = handler.store

    def admin(auth: UserAPIKeyAuth) -> None:
        if not is_admin(auth):
            raise ProfileError(403, "profiles are managed by proxy admins only (LiteLLM's proxy_admin role: the "
                                    "master key or an admin user's key); this key is not one")

    async def workers() -> ProfilesServed | None:
        try:
            return await store.profiles_served()
        except StoreUnavailable:
            return None

    def config_view(name: str, served: ProfilesServed | None) -> dict:
        models = [m["id"] for m in served_models(handler) if m["profile"] == name]
        profile = handler.profiles[name]
        return {"name": name, "source": "config", "version": CONFIG_VERSION, "read_only": True,
                "model": models[0] if models else None, "protocol": profile.debate.protocol,
                "profile": profile.model_dump(mode="json", exclude_unset=True),
                "rollout": None if served is None else rollout(served, name, CONFIG_VERSION)}

    def stored_view(record: dict, served: ProfilesServed | None) -> dict:
        block = record["profile"] or {}
        version = None if record["deleted"] else record["version"]
        return {"name": record["name"], "source": "store", "version": record["version"], "read_only": False,
                "model": model_name(record["name"]), "protocol": (block.get("debate") or {}).get("protocol", "moa"),
                "profile": record["profile"], "deleted": record["deleted"], "updated_at": record["updated_at"],
                "rollout": None if served is None else rollout(served, record["name"], version)}

    def entries(*, but: tuple[str, ...] = ()) -> list[dict]:
        """The Router's deployments, those tagged with a `model_info` key in `but` left out."""
        r = handler.get_router()
        found = (r.get_model_list() or []) if r is not None else []
        return [e for e in found if isinstance(e, dict) and not set(e.get("model_info") or {}) & set(but)]

    def checked(name: str, raw: dict) -> None:
        """`raw` checked as the config is, this proxy's models as its model_list (400s)."""
        fusion = frozenset(str(e.get("model_name")) for e in entries() if profile_name(e, handler.provider))
        # a peer's or a stored profile's deployment is no model_list entry
        plain = {str(e.get("model_name")) for e in entries(but=(TAG, "chorus_peer"))}
        aliases = set(getattr(handler.get_router(), "model_group_alias", None) or {})
        known = None if any("*" in n for n in plain) else plain | aliases
        validate(name, raw, known_models=known, fusion_models=fusion, provider=handler.provider)

    def read_only(name: str) -> None:
        if name in handler.config_profiles:
            raise ProfileError(409, f"profile {name!r} comes from litellm_config.yaml and is read-only here: "
                                    "change the file (and reload the proxy)")

    async def live(name: str) -> dict:
        found = await from_store(store.get_profile, name)
        if found is None or found["deleted"]:
            gone = f" (deleted at version {found['version']})" if found else ""
            raise ProfileError(404, f"no stored profile {name!r}{gone}")
        return found

    async def stale(name: str, version: int) -> ProfileError:
        now = await from_store(store.get_profile, name)
        at = "gone" if now is None else f"{'deleted' if now['deleted'] else ''} at version {now['version']}".strip()
        return ProfileError(409, f"version: {version} is stale: profile {name!r} is {at} now; read it again")

    async def served(record: dict) -> dict:
        await handler.profile_sync().sync_once()  # this worker serves it before answering
        return stored_view(record, await workers())

    @router.get("")
    async def list_profiles(include_deleted: bool = False, auth: UserAPIKeyAuth = AUTH) -> dict:
        admin(auth)
        records, now = await from_store(store.list_profiles), await workers()
        return {"workers": None if now is None else now.workers,
                "profiles": [*(config_view(n, now) for n in sorted(handler.config_profiles)),
                             *(stored_view(r, now) for r in records if include_deleted or not r["deleted"])]}

    @router.get("/{name}")
    async def get_profile(name: str, auth: UserAPIKeyAuth = AUTH) -> dict:
        admin(auth)
        if name in handler.config_profiles:
            return config_view(name, await workers())
        return stored_view(await live(name), await workers())

    @router.post("", status_code=201)
    async def create(request: Request, auth: UserAPIKeyAuth = AUTH) -> dict:
        admin(auth)
        body = read_body(NewProfile, await request.body())
        check_name(body.name, config_profiles=handler.config_profiles, provider=handler.provider,
                   served={str(e.get("model_name")) for e in entries(but=(TAG,))})
        checked(body.name, body.profile)
        before = await from_store(store.get_profile, body.name)
        if before is not None and not before["deleted"]:
            raise ProfileError(409, f"name: profile {body.name!r} exists (version {before['version']}); "
                                    f"PUT /chorus/v1/profiles/{body.name} changes it")
        record = await from_store(store.put_profile, body.name, body.profile, before["version"] if before else 0)
        if record is None:
            raise ProfileError(409, f"name: profile {body.name!r} was created meanwhile; read it, then PUT")
        return await served(record)

    @router.put("/{name}")
    async def change(name: str, request: Request, auth: UserAPIKeyAuth = AUTH) -> dict:
        admin(auth)
        read_only(name)
        body = read_body(ProfileChange, await request.body())
        checked(name, body.profile)
        await live(name)
        record = await from_store(store.put_profile, name, body.profile, body.version)
        if record is None:
            raise await stale(name, body.version)
        return await served(record)

    @router.delete("/{name}")
    async def delete(name: str, version: int = Query(..., ge=1), auth: UserAPIKeyAuth = AUTH) -> dict:
        admin(auth)
        read_only(name)
        await live(name)
        record = await from_store(store.delete_profile, name, version)
        if record is None:
            raise await stale(name, version)
        return await served(record)

    return router
